"""The API's side of rotation: each new pooled connection takes the current credential.

A short cache keeps the store out of the hot path; a failed connection attempt drops
the cache, so the pool's next attempt reads the store again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from rates_platform.dbaccess.secrets import CURRENT, SecretStore, with_stage


class CurrentCredential:
    def __init__(
        self,
        store: SecretStore,
        name: str,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store, self._name, self._ttl, self._clock = store, name, ttl, clock
        self._cached: dict[str, str] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def login(self) -> dict[str, str]:
        """``user`` and ``password`` for libpq, from the newest current version."""
        with self._lock:
            if self._cached is None or self._clock() - self._read_at >= self._ttl:
                version = with_stage(self._store, self._name, CURRENT)
                if version is None:
                    raise psycopg.OperationalError(
                        f"no current credential in secret {self._name!r}"
                    )
                self._cached = version.login()
                self._read_at = self._clock()
            return dict(self._cached)

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None


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
