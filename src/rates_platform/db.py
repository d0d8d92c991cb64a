"""Connection pool and the one way the service reads from PostgreSQL.

The pool opens lazily in the application factory (never at import time), sets a
statement timeout on every connection, and replaces connections that a database
restart has broken, so the service recovers without a process restart. While the
database refuses connections, requests fail at once instead of each waiting out the
pool timeout (see Outage), so no request thread is tied up by an outage.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

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
        # Generic plans: every query here is a primary-key range whose best plan does
        # not depend on its parameters, and re-planning each execution (PostgreSQL's
        # choice for `= ANY(array)` parameters) cost more CPU than running the query.
        "options": f"-c statement_timeout={statement_timeout_ms}"
        " -c plan_cache_mode=force_generic_plan",
        # A server that accepts connections but never answers must not hang a pool
        # worker (or a probe) for good.
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    }
    if not settings.secret_store:
        return lambda: static, psycopg.Connection
    credential = CurrentCredential(
        open_store(settings.secret_store), settings.secret_name, ttl=settings.credential_ttl
    )
    return lambda: {**static, **credential.login()}, credentials.connection_class(credential)


class Outage:
    """Whether this worker has seen the database refuse connections.

    Begun by a failed connection attempt (the pool's background attempts included),
    ended by the next connection or query that succeeds. While it lasts, requests
    answer 503 at once rather than each waiting out the pool timeout, so an outage
    ties up no request thread; one request at a time, at most every
    PROBE_INTERVAL_SECONDS, tries to connect first and ends it if the database answers.
    """

    PROBE_INTERVAL_SECONDS = 0.1

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.active = False
        self._clock = clock
        self._probe: Callable[[], None] = lambda: None
        self._probing = threading.Lock()
        self._next_probe = float("-inf")

    def probe_with(self, probe: Callable[[], None]) -> None:
        """How to try the database: connect and close, raising on failure."""
        self._probe = probe

    def begin(self) -> None:
        self.active = True

    def end(self) -> None:
        self.active = False

    def over(self) -> bool:
        """False during the outage; may first probe the database (one caller at a time)."""
        if not self.active:
            return True
        if not self._probing.acquire(blocking=False):
            return False
        try:
            started = self._clock()
            if started < self._next_probe:
                return False
            try:
                self._probe()
            except psycopg.Error:
                # A probe that hung (a frozen server) waits as long again before the
                # next: a request thread spends at most half its time probing.
                ended = self._clock()
                self._next_probe = ended + max(self.PROBE_INTERVAL_SECONDS, ended - started)
                return False
            self.end()
            return True
        finally:
            self._probing.release()


def _observed(base: type[psycopg.Connection[Any]], outage: Outage) -> type[psycopg.Connection[Any]]:
    """``base`` whose connection attempts open and close the outage."""

    class ObservedConnection(base):  # type: ignore[valid-type, misc]
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> psycopg.Connection[Any]:
            try:
                conn: psycopg.Connection[Any] = super().connect(conninfo, **kwargs)
            except psycopg.OperationalError:
                outage.begin()
                raise
            outage.end()
            return conn

    return ObservedConnection


# How long the pool keeps retrying one connection before it gives up on it. While
# an attempt waits out its backoff the pool starts no other, so this bounds how long
# a request can wait for a connection once the database is back; the next request
# starts a fresh attempt at once, and no backoff ever grows to minutes.
RECONNECT_TIMEOUT_SECONDS = 0.25
PROBE_CONNECT_TIMEOUT = 2
CONNECT_TIMEOUT_SECONDS = 5


def make_pool(
    settings: Settings, *, name: str = "rates-api", outage: Outage | None = None
) -> ConnectionPool:
    """A closed pool configured from settings; call ``open()`` where it is used."""
    kwargs, connection_class = _login(settings)
    outage = outage or Outage()
    observed = _observed(connection_class, outage)
    # The outage's probe logs in exactly as the pool does, outside the pool.
    outage.probe_with(
        lambda: observed.connect(
            settings.database_url, **{**kwargs(), "connect_timeout": PROBE_CONNECT_TIMEOUT}
        ).close()
    )
    return ConnectionPool(
        settings.database_url,
        kwargs=kwargs,
        connection_class=observed,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout,
        max_lifetime=settings.pool_max_lifetime,
        reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
        open=False,
        name=name,
    )


def connect(settings: Settings) -> psycopg.Connection[Any]:
    """One connection outside the pool, logged in exactly as the pool's are."""
    kwargs, connection_class = _login(settings)
    return connection_class.connect(settings.database_url, **kwargs())


# A request waits for a connection in slices this long, so an outage that begins
# while it waits ends the wait at once.
WAIT_SLICE_SECONDS = 0.05


class Watchdog:
    """Client-side deadlines for queries, which a hung server cannot enforce.

    statement_timeout is enforced by the server; a server that is frozen, or behind a
    network that drops everything, enforces nothing, and the request thread waits on
    its socket until TCP gives up (minutes to hours). A query still running
    ``grace`` seconds past the statement timeout has its socket shut down: the query
    fails as a lost connection, and the outage begins, so the requests behind it
    answer 503 at once instead of queueing for the same fate.
    """

    INTERVAL_SECONDS = 0.1

    def __init__(self, deadline: float, outage: Outage) -> None:
        self._deadline, self._outage = deadline, outage
        self._running: dict[int, tuple[float, psycopg.Connection[Any]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watching(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        key = threading.get_ident()
        with self._lock:
            self._running[key] = (time.monotonic() + self._deadline, conn)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="db-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(key, None)

    def _watch(self) -> None:
        while True:
            time.sleep(self.INTERVAL_SECONDS)
            now = time.monotonic()
            with self._lock:
                late = [conn for deadline, conn in self._running.values() if deadline < now]
            for conn in late:
                self._outage.begin()
                _sever(conn)


def _sever(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down under libpq, which then reports it lost."""
    try:
        duplicate = os.dup(conn.pgconn.socket)
    except (psycopg.Error, OSError):
        return  # already closed
    with socket.socket(fileno=duplicate) as sock:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return


# How far past statement_timeout a query may run before the watchdog ends it.
WATCHDOG_GRACE_SECONDS = 1.0


class Database:
    """Runs read-only work on a pooled connection, retrying once on a dead connection.

    After a server restart every idle pooled connection is dead; the first query on
    one fails although the server is back. Such a failure is retried once, after the
    pool has dropped its other dead connections, so clients do not see it. A query
    the watchdog had to end is not retried: the server is hung, not restarted.
    """

    def __init__(
        self, pool: ConnectionPool, outage: Outage, timeout: float, statement_timeout: float
    ) -> None:
        self.pool, self.outage, self.timeout = pool, outage, timeout
        self.watchdog = Watchdog(statement_timeout + WATCHDOG_GRACE_SECONDS, outage)
        # One cursor per pooled connection; a connection serves one thread at a time, so
        # its cursor does too. A cursor holds its connection (weak keys would never be
        # let go), so closed connections leave the map whenever a cursor is made, which
        # is when the pool has replaced one: it never holds many more than the pool.
        self._cursors: dict[psycopg.Connection[Any], psycopg.Cursor[tuple[Any, ...]]] = {}
        self._cursors_lock = threading.Lock()

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection within ``timeout``; PoolTimeout at once during an outage."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if not self.outage.over():
                raise PoolTimeout("the database is refusing connections")
            remaining = deadline - time.monotonic()
            try:
                conn = self.pool.getconn(timeout=max(0.0, min(WAIT_SLICE_SECONDS, remaining)))
                break
            except PoolTimeout:
                if remaining <= WAIT_SLICE_SECONDS:
                    raise
        try:
            with conn, self.watchdog.watching(conn):
                yield conn
        finally:
            self.pool.putconn(conn)

    def read(self, work: Callable[[psycopg.Connection[tuple[object, ...]]], T]) -> T:
        for attempt in (1, 2):
            with self.connection() as conn:
                try:
                    result = work(conn)
                    self.outage.end()
                    return result
                except psycopg.OperationalError:
                    if attempt == 2 or not conn.broken or self.outage.active:
                        raise
            self.pool.check()
        raise AssertionError("unreachable")  # pragma: no cover

    def rows(self, statement: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """All rows of one read-only statement, as ``read`` runs it, on the cursor its
        connection keeps: a new cursor per query cost 15-20 µs of CPU, a fifth of what
        /rates spent in psycopg."""

        def fetch(conn: psycopg.Connection[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
            cursor = self._cursors.get(conn)
            if cursor is None:
                cursor = self._new_cursor(conn)
            return cursor.execute(statement, params).fetchall()

        return self.read(fetch)

    def _new_cursor(self, conn: psycopg.Connection[Any]) -> psycopg.Cursor[tuple[Any, ...]]:
        cursor = conn.cursor()
        with self._cursors_lock:  # readers only look up; every change is made here
            for closed in [c for c in self._cursors if c.closed]:
                del self._cursors[closed]
            self._cursors[conn] = cursor
        return cursor
