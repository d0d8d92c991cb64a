"""Per-client rate limits, shared by every worker process of one instance.

Fixed windows from the ``limits`` library, counted in a small SQLite file in a
per-instance directory (``rates serve`` makes it, like the metrics directory): one
UPSERT per request for all its windows, in WAL mode with ``synchronous=OFF``, about
15 us per window, atomic across processes and threads; nothing survives the
instance, which is what per-instance limits want (the gateway limits across
instances). limits' memory storage would count per process, so N workers would
allow N times the limit. Writers take turns on an ``flock`` first: the kernel wakes
the next one at once, where SQLite's own busy handler would sleep (milliseconds,
hundreds under contention) and stall requests.

Responses carry the IETF ``RateLimit-Policy`` and ``RateLimit`` fields
(draft-ietf-httpapi-ratelimit-headers); a refusal is a 429 with ``Retry-After``.
"""

from __future__ import annotations

import atexit
import fcntl
import ipaddress
import math
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from limits import RateLimitItem, parse_many
from limits.storage import Storage

# Expired counters are deleted at most this often per process, so the file stays small.
PURGE_INTERVAL_SECONDS = 30.0
# Seconds a writer waits for another process's UPSERT (microseconds each) before failing.
BUSY_TIMEOUT_SECONDS = 2.0
DATABASE_NAME = "ratelimit.sqlite3"
LOCK_NAME = "ratelimit.lock"
# Set by `rates serve` for its workers: the instance's directory for the counters.
DIRECTORY_VARIABLE = "RATES_LIMITS_DIR"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def instance_directory() -> Path:
    """The directory `rates serve` made for this instance; else (an app built in one
    process, as in tests) a private one, removed at exit."""
    configured = os.environ.get(DIRECTORY_VARIABLE)
    if configured:
        return Path(configured)
    path = tempfile.mkdtemp(prefix="rates-limits-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return Path(path)


class SharedFileStorage(Storage):
    """A limits Storage over one SQLite file, safe across processes and threads."""

    STORAGE_SCHEME = ["rates-sqlite"]  # noqa: RUF012 - limits' registry reads a list

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self._path = str(directory / DATABASE_NAME)
        self._lock_path = directory / LOCK_NAME
        self._local = threading.local()
        self._purged_at = 0.0
        self._conn().execute(
            "CREATE TABLE IF NOT EXISTS counters"
            " (key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at REAL NOT NULL)"
            " WITHOUT ROWID"
        )

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # One connection per thread: sqlite3 connections are not shared.
            conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            self._local.conn = conn
        return conn

    def _writer_turn(self) -> int:
        """This thread's descriptor of the lock file: flock excludes other open files
        only, so each thread needs its own to wait for the others."""
        fd: int | None = getattr(self._local, "lock_fd", None)
        if fd is None:
            fd = self._local.lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        return fd

    def incr_many(
        self, windows: Sequence[tuple[str, int]], amount: int = 1
    ) -> list[tuple[int, float]]:
        """Add ``amount`` to each (key, expiry seconds) window, a new window where one
        expired, in one statement (one lock): each window's (count, expires_at)."""
        conn, turn = self._conn(), self._writer_turn()
        fcntl.flock(turn, fcntl.LOCK_EX)
        try:
            rows = self._upsert(conn, windows, amount)
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)
        found = {key: (int(count), float(expires_at)) for key, count, expires_at in rows}
        return [found[key] for key, _ in windows]

    def _upsert(
        self, conn: sqlite3.Connection, windows: Sequence[tuple[str, int]], amount: int
    ) -> list[tuple[str, int, float]]:
        now = time.time()
        if now - self._purged_at >= PURGE_INTERVAL_SECONDS:
            self._purged_at = now
            conn.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))
        # In SET, both CASEs read the row's old values, so they agree on "expired".
        return conn.execute(
            "INSERT INTO counters (key, count, expires_at) VALUES "  # noqa: S608 - placeholders only
            + ", ".join(f"(?{3 + 2 * i}, ?2, ?{4 + 2 * i})" for i in range(len(windows)))
            + " ON CONFLICT (key) DO UPDATE SET"
            " count = CASE WHEN expires_at <= ?1 THEN ?2 ELSE count + ?2 END,"
            " expires_at = CASE WHEN expires_at <= ?1 THEN excluded.expires_at ELSE expires_at END"
            " RETURNING key, count, expires_at",
            [now, amount, *(v for key, expiry in windows for v in (key, now + expiry))],
        ).fetchall()

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.incr_many([(key, expiry)], amount)[0][0]

    def get(self, key: str) -> int:
        row = (
            self._conn()
            .execute(
                "SELECT count FROM counters WHERE key = ? AND expires_at > ?", (key, time.time())
            )
            .fetchone()
        )
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        row = (
            self._conn()
            .execute(
                "SELECT expires_at FROM counters WHERE key = ? AND expires_at > ?",
                (key, time.time()),
            )
            .fetchone()
        )
        return float(row[0]) if row else time.time()

    def check(self) -> bool:
        return self._conn().execute("SELECT 1").fetchone() is not None

    def reset(self) -> int | None:
        return self._conn().execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        self._conn().execute("DELETE FROM counters WHERE key = ?", (key,))


@dataclass(frozen=True)
class Verdict:
    """What one request used: allowed or not, and the header fields that say so."""

    allowed: bool
    headers: dict[str, str]
    reason: str = ""  # the refusing window's unit, e.g. "second": a closed set


def _policy_name(item: RateLimitItem) -> str:
    granularity = item.GRANULARITY.name
    return granularity if item.multiples == 1 else f"{item.multiples}{granularity}"


class Policy:
    """One parsed limit set (e.g. ``100/second;3000/minute``), its header precomputed."""

    def __init__(self, spec: str) -> None:
        self.items: Sequence[RateLimitItem] = parse_many(spec)
        self.names = [_policy_name(item) for item in self.items]
        self.header = ", ".join(
            f'"{name}";q={item.amount};w={item.get_expiry()}'
            for name, item in zip(self.names, self.items, strict=True)
        )


class RateLimiter:
    """Counts each client's requests against its policy, across the instance's workers."""

    def __init__(self, storage: SharedFileStorage, default: str) -> None:
        self._storage = storage
        self._default = Policy(default) if default else None
        self._policies: dict[str, Policy] = {}

    def policy_for(self, override: str | None) -> Policy | None:
        """A key's own limits if it has them, else the default (None: unlimited)."""
        if not override:
            return self._default
        policy = self._policies.get(override)
        if policy is None:
            policy = self._policies[override] = Policy(override)
        return policy

    def hit(self, identity: str, policy: Policy) -> Verdict:
        """Count one request in every window; refused if any window is over its quota."""
        tightest: tuple[int, int, str] | None = None  # remaining, reset seconds, name
        refused, retry_after = "", 0
        counted = self._storage.incr_many(
            [(item.key_for(identity), item.get_expiry()) for item in policy.items]
        )
        for name, item, (count, expires_at) in zip(
            policy.names, policy.items, counted, strict=True
        ):
            remaining = item.amount - count
            reset = max(1, math.ceil(expires_at - time.time()))
            if remaining < 0:
                refused = refused or item.GRANULARITY.name
                retry_after = max(retry_after, reset)
            if tightest is None or remaining < tightest[0]:
                tightest = (remaining, reset, name)
        assert tightest is not None  # noqa: S101 - parse_many never returns an empty list
        remaining, reset, name = tightest
        headers = {
            "RateLimit-Policy": policy.header,
            "RateLimit": f'"{name}";r={max(0, remaining)};t={reset}',
        }
        if refused:
            headers["Retry-After"] = str(retry_after)
        return Verdict(not refused, headers, refused)


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the
    right-most X-Forwarded-For entry that is not itself a trusted proxy (entries left
    of it could be forged by the client). Junk in the header stops the walk."""
    if not trusted or not forwarded_for or not _within(peer, trusted):
        return peer
    client = peer
    for entry in reversed(forwarded_for.split(",")):
        candidate = entry.strip()
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            return client
        client = candidate
        if not _within(candidate, trusted):
            return candidate
    return client


def _within(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
