"""Connection pool and the one way the service reads from PostgreSQL.

The pool opens lazily in the application factory (never at import time), sets a
statement timeout on every connection, and replaces connections that a database
restart has broken, so the service recovers without a process restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from rates_platform.dbaccess import credentials
from rates_platform.dbaccess.credentials import CurrentCredential
from rates_platform.dbaccess.stores import open_store
from rates_platform.settings import Settings

T = TypeVar("T")
APPLICATION_NAME = "rates-api"


def _login(
    settings: Settings,
) -> tuple[Callable[[], dict[str, Any]], type[psycopg.Connection[Any]]]:
    """Connection keyword arguments (a callable), and the connection class to use.

    With a secret store configured, every new connection logs in with the store's
    current credential, so rotations need no restart.
    """
    statement_timeout_ms = int(settings.statement_timeout * 1000)
    static = {
        # Reads are single statements: autocommit saves a BEGIN/COMMIT round trip each.
        "autocommit": True,
        "application_name": APPLICATION_NAME,
        "options": f"-c statement_timeout={statement_timeout_ms}",
    }
    if not settings.secret_store:
        return lambda: static, psycopg.Connection
    credential = CurrentCredential(
        open_store(settings.secret_store), settings.secret_name, ttl=settings.credential_ttl
    )
    return lambda: {**static, **credential.login()}, credentials.connection_class(credential)


def make_pool(settings: Settings, *, name: str = "rates-api") -> ConnectionPool:
    """A closed pool configured from settings; call ``open()`` where it is used."""
    kwargs, connection_class = _login(settings)
    return ConnectionPool(
        settings.database_url,
        kwargs=kwargs,
        connection_class=connection_class,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout,
        max_lifetime=settings.pool_max_lifetime,
        reconnect_timeout=60 * 60 * 24 * 365,  # keep retrying: outages end, processes should not
        open=False,
        name=name,
    )


def connect(settings: Settings) -> psycopg.Connection[Any]:
    """One connection outside the pool, logged in exactly as the pool's are."""
    kwargs, connection_class = _login(settings)
    return connection_class.connect(settings.database_url, **{**kwargs(), "connect_timeout": 5})


class Database:
    """Runs read-only work on a pooled connection, retrying once on a dead connection.

    After a server restart every idle pooled connection is dead; the first query on
    one fails although the server is back. Such a failure is retried once, after the
    pool has dropped its other dead connections, so clients do not see it.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def read(self, work: Callable[[psycopg.Connection[tuple[object, ...]]], T]) -> T:
        for attempt in (1, 2):
            with self.pool.connection() as conn:
                try:
                    return work(conn)
                except psycopg.OperationalError:
                    if attempt == 2 or not conn.broken:
                        raise
            self.pool.check()
        raise AssertionError("unreachable")  # pragma: no cover
