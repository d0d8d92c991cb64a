"""The API's side of rotation: each new pooled connection takes the current credential.

A short cache keeps the store out of the hot path; a failed connection attempt drops
the cache, so the pool's next attempt reads the store again. While the store cannot be
read, the last credential read is served (logged and counted): it keeps working for the
rotation's grace period at least, and an outage of the store alone must not stop new
connections.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from prometheus_client import Counter

from rates_platform.dbaccess.secrets import CURRENT, SecretStore, with_stage
from rates_platform.expiring import Expiring

log = logging.getLogger(__name__)

STORE_ERRORS = Counter(
    "db_credential_store_errors_total",
    "Reads of the secret store that failed; the last credential read was served instead.",
)


class CurrentCredential:
    def __init__(
        self,
        store: SecretStore,
        name: str,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        last: list[dict[str, str]] = []  # the last credential read, kept across errors
        lock = threading.Lock()

        def read() -> dict[str, str]:
            try:
                version = with_stage(store, name, CURRENT)
            except Exception as exc:  # any store failure: Key Vault, network, file
                with lock:
                    if not last:
                        raise
                    STORE_ERRORS.inc()
                    log.warning(
                        "secret store unreadable (%s); using the cached credential of %s",
                        type(exc).__name__,
                        last[0]["user"],
                    )
                    return last[0]
            if version is None:
                raise psycopg.OperationalError(f"no current credential in secret {name!r}")
            with lock:
                last[:] = [version.login()]
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
