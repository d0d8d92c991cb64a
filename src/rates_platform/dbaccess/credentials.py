"""The API's side of rotation: each new pooled connection takes the current credential.

A short cache keeps the store out of the hot path; a failed connection attempt drops
the cache, so the pool's next attempt reads the store again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

from rates_platform.dbaccess.secrets import CURRENT, SecretStore, with_stage
from rates_platform.expiring import Expiring


class CurrentCredential:
    def __init__(
        self,
        store: SecretStore,
        name: str,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        def read() -> dict[str, str]:
            version = with_stage(store, name, CURRENT)
            if version is None:
                raise psycopg.OperationalError(f"no current credential in secret {name!r}")
            return version.login()

        self._login = Expiring(read, ttl, clock)

    def login(self) -> dict[str, str]:
        """``user`` and ``password`` for libpq, from the newest current version."""
        return dict(self._login.get())

    def invalidate(self) -> None:
        self._login.invalidate()


def connection_class(credential: CurrentCredential) -> type[psycopg.Connection[Any]]:
    """A Connection class that drops the cached credential when a connect fails."""

    class StoreBackedConnection(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> StoreBackedConnection:
            try:
                return super().connect(conninfo, **kwargs)
            except psycopg.OperationalError:
                credential.invalidate()
                raise

    return StoreBackedConnection
