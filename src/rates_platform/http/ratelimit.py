"""Per-client rate limits, shared by every worker process of one instance.

Fixed windows from the ``limits`` library, counted in a small SQLite file in a
per-instance directory (``rates serve`` makes it, like the metrics directory), atomic
across processes and threads; nothing survives the instance, which is what
per-instance limits want (the gateway limits across instances). limits' memory
storage would count per process, so N workers would allow N times the limit.

Each worker takes quota from the file in leases of 4 % of a window's quota (at least
one request) and spends them in memory: with a large quota most requests cost a dict
lookup, with a small one every request writes (one UPSERT for all its windows, about
25 us). Never more than the quota is admitted; a client may be refused up to 4 % early
per other worker holding an unspent lease. Writers take turns on an ``flock``: the
kernel hands it over at once, where SQLite's own busy handler sleeps (stalls of up to
0.45 s were measured under contention).

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
from typing import Any, NamedTuple

from limits import RateLimitItem, parse_many
from limits.storage import Storage

# Expired counters are deleted at most this often per process, so the file stays small.
PURGE_INTERVAL_SECONDS = 30.0
# While the file is full, expired counters are looked for at most this often: each look
# scans every counter (some 13 ms at the cap) with the writers' lock held.
FULL_PURGE_INTERVAL_SECONDS = 1.0
# The counters file's ceiling (about 190 bytes per client and two windows: some 80,000
# clients counted at once). A flood of new addresses cannot fill /dev/shm (64 MiB in a
# default container) and leave no room to purge: past it, new clients are not counted
# (fail open, the gateway still limits) and writes purge expired counters (once a
# second). The write-ahead log is on top (up to about MAX_WAL_BYTES: SQLite checkpoints
# every 1,000 pages): 20.9 MB on disk in all, measured at the cap.
MAX_COUNTERS_BYTES = 16 * 2**20
# The write-ahead log is cut back to this after each checkpoint.
MAX_WAL_BYTES = 4 * 2**20
# Seconds a writer waits for another process's UPSERT (microseconds each) before failing.
BUSY_TIMEOUT_SECONDS = 2.0
# A worker takes this share of a window's quota at a time (at least one request).
LEASE_FRACTION = 25
# Past this many leases a worker drops them all (unspent leases are simply not used).
MAX_LEASES = 10_000
# limits' plain counters (incr) take whatever is asked: no quota caps them.
UNCAPPED = 2**62
DATABASE_NAME = "ratelimit.sqlite3"
LOCK_NAME = "ratelimit.lock"
# Set by `rates serve` for its workers: the instance's directory for the counters.
DIRECTORY_VARIABLE = "RATES_LIMITS_DIR"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# The counters file is written on every lease taken. On a disk-backed /tmp (ext4 here)
# those writes cost the bench's limited lanes about 80 us more server CPU per request
# than on tmpfs, in paired runs; /dev/shm is tmpfs on Linux hosts and in containers.
# Only mkdtemp's private (0700) directories are made there.
RAM_DIRECTORY = "/dev/shm"  # noqa: S108 # nosec B108


def new_instance_directory() -> str:
    """A fresh directory for an instance's counters: under an explicit temporary directory
    if one is set (TMPDIR, TEMP or TMP, as tempfile reads them), else under /dev/shm where
    it is writable, else the default temporary directory."""
    # An empty one is not set: tempfile skips it too.
    explicit = any(os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP"))
    ram = not explicit and os.access(RAM_DIRECTORY, os.W_OK | os.X_OK)
    return tempfile.mkdtemp(prefix="rates-limits-", dir=RAM_DIRECTORY if ram else None)


def instance_directory() -> Path:
    """The directory `rates serve` made for this instance; else (an app built in one
    process, as in tests) a private one, removed at exit."""
    configured = os.environ.get(DIRECTORY_VARIABLE)
    if configured:
        return Path(configured)
    path = new_instance_directory()
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return Path(path)


# A new row's count is what it asked for (excluded.count). In SET, every CASE reads the
# row's old values, so they agree on "expired" and on the old count. ?1 is now.
_UPSERT_HEAD = "INSERT INTO counters (key, count, expires_at, quota, granted) VALUES"
_UPSERT_TAIL = (
    "ON CONFLICT (key) DO UPDATE SET"
    " granted = CASE WHEN expires_at <= ?1 THEN excluded.count"
    " ELSE max(0, min(excluded.count, excluded.quota - count)) END,"
    " count = CASE WHEN expires_at <= ?1 THEN excluded.count"
    " ELSE count + max(0, min(excluded.count, excluded.quota - count)) END,"
    " expires_at = CASE WHEN expires_at <= ?1 THEN excluded.expires_at ELSE expires_at END,"
    " quota = excluded.quota"
    " RETURNING key, granted, count, expires_at"
)


class SharedFileStorage(Storage):
    """A limits Storage over one SQLite file, safe across processes and threads."""

    STORAGE_SCHEME = ["rates-sqlite"]  # noqa: RUF012 - limits' registry reads a list

    def __init__(self, directory: Path, max_bytes: int = MAX_COUNTERS_BYTES) -> None:
        super().__init__()
        self._max_bytes = max_bytes
        self._path = str(directory / DATABASE_NAME)
        self._lock_path = directory / LOCK_NAME
        self._local = threading.local()
        self._purged_at = 0.0
        self._conn()

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # One connection per thread: sqlite3 connections are not shared. The
            # directory is made again if something removed it under a running server.
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            # Set up on the writers' turn: workers starting together switched a new
            # file to WAL at once and some failed with "database is locked" at once,
            # SQLite's busy handler not called (18 of 800 opens, 4 threads at a time).
            turn = self._writer_turn()
            fcntl.flock(turn, fcntl.LOCK_EX)
            try:
                conn = self._connect()
            finally:
                fcntl.flock(turn, fcntl.LOCK_UN)
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            conn.execute(f"PRAGMA max_page_count = {max(1, self._max_bytes // int(page_size))}")
            conn.execute(f"PRAGMA journal_size_limit = {MAX_WAL_BYTES}")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY,"
                " count INTEGER NOT NULL, expires_at REAL NOT NULL, quota INTEGER NOT NULL,"
                " granted INTEGER NOT NULL) WITHOUT ROWID"
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def _writer_turn(self) -> int:
        """This thread's descriptor of the lock file: flock excludes other open files
        only, so each thread needs its own to wait for the others."""
        fd: int | None = getattr(self._local, "lock_fd", None)
        if fd is None:
            fd = self._local.lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        return fd

    def take_many(self, asks: Sequence[Ask]) -> list[Taken]:
        """For each ask, in one statement (one turn on the lock): start a new window if
        the key's expired, then grant up to ``want`` more, never past ``quota``."""
        conn, turn = self._conn(), self._writer_turn()
        fcntl.flock(turn, fcntl.LOCK_EX)
        try:
            rows = self._upsert(conn, asks)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                # A take purges expired counters first, a second after the last purge at
                # the latest: not on every take while the file stays full.
                self._purged_at = min(
                    self._purged_at,
                    time.time() - PURGE_INTERVAL_SECONDS + FULL_PURGE_INTERVAL_SECONDS,
                )
            raise
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)
        found = {row[0]: Taken(int(row[1]), int(row[2]), float(row[3])) for row in rows}
        return [found[ask.key] for ask in asks]

    def _upsert(self, conn: sqlite3.Connection, asks: Sequence[Ask]) -> list[tuple[Any, ...]]:
        now = time.time()
        if now - self._purged_at >= PURGE_INTERVAL_SECONDS:
            self._purged_at = now
            conn.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))
        # One "(?a, ?b, ?c, ?d, ?b)" group per ask: only placeholders, every value bound.
        groups = ", ".join(
            "(?{0}, ?{1}, ?{2}, ?{3}, ?{1})".format(*(2 + 4 * i + j for j in range(4)))
            for i in range(len(asks))
        )
        return conn.execute(
            " ".join((_UPSERT_HEAD, groups, _UPSERT_TAIL)),
            [
                now,
                *(
                    v
                    for ask in asks
                    for v in (ask.key, min(ask.want, ask.quota), now + ask.expiry, ask.quota)
                ),
            ],
        ).fetchall()

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.take_many([Ask(key, expiry, amount, UNCAPPED)])[0].count

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
class Ask:
    """Up to ``want`` requests from ``key``'s window of ``expiry`` seconds, capped at ``quota``."""

    key: str
    expiry: int
    want: int
    quota: int


@dataclass(frozen=True)
class Taken:
    """How many were granted, the window's count after that, and when the window ends."""

    granted: int
    count: int
    expires_at: float


@dataclass
class Lease:
    """Quota a worker took from the shared file and has not spent yet."""

    tokens: int
    count: int  # the shared count when it was taken
    expires_at: float


class Verdict(NamedTuple):  # one per limited request: a tuple is the cheapest record
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
        self.leases = [max(1, item.amount // LEASE_FRACTION) for item in self.items]
        self.amounts = [item.amount for item in self.items]
        self.expiries = [item.get_expiry() for item in self.items]
        # limits' key for each window around the identity, split once: joining three
        # strings per request is a fifth of the cost of calling key_for.
        self.keys = [tuple(item.key_for("\x00").split("\x00")) for item in self.items]
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
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def policy_for(self, override: str | None) -> Policy | None:
        """A key's own limits if it has them, else the default (None: unlimited)."""
        if not override:
            return self._default
        policy = self._policies.get(override)
        if policy is None:
            policy = self._policies[override] = Policy(override)
        return policy

    def hit(self, identity: str, policy: Policy) -> Verdict:
        """Count one request in every window, from this worker's leases where it has
        some, else from the shared file; refused if any window's quota is spent."""
        now = time.time()
        keys = [before + identity + after for before, after in policy.keys]
        # Per window: requests left after this one (-1: refused) and when it ends.
        used: list[tuple[int, float]] = [(0, 0.0)] * len(keys)
        asks = []
        with self._lock:
            for i, key in enumerate(keys):
                lease = self._leases.get(key)
                if lease is not None and lease.tokens > 0 and now < lease.expires_at:
                    lease.tokens -= 1
                    left = policy.amounts[i] - lease.count + lease.tokens
                    used[i] = (left, lease.expires_at)
                else:
                    asks.append(i)
        if asks:
            taken = self._storage.take_many(
                [
                    Ask(keys[i], policy.expiries[i], policy.leases[i], policy.amounts[i])
                    for i in asks
                ]
            )
            with self._lock:
                if len(self._leases) >= MAX_LEASES:
                    self._leases.clear()
                for i, got in zip(asks, taken, strict=True):
                    lease = self._settle(keys[i], got)
                    left = -1 if lease is None else policy.amounts[i] - lease.count + lease.tokens
                    used[i] = (left, got.expires_at)
        return self._verdict(policy, used)

    def _settle(self, key: str, got: Taken) -> Lease | None:
        """This worker's lease for ``key`` once a take returned (the caller holds the
        lock); None if the take was refused."""
        lease = self._leases.get(key)
        if not got.granted:
            # Kept if another thread took it meanwhile: its tokens are quota.
            if lease is not None and (
                lease.expires_at < got.expires_at
                or (lease.expires_at == got.expires_at and lease.tokens == 0)
            ):
                del self._leases[key]
            return None
        if lease is not None and lease.expires_at == got.expires_at:
            # Another thread of this worker refilled the same window meanwhile: keep
            # its tokens too, or they are counted unspent.
            lease.tokens += got.granted - 1
            lease.count = max(lease.count, got.count)
            return lease
        taken = Lease(got.granted - 1, got.count, got.expires_at)
        if lease is None or lease.expires_at < got.expires_at:
            self._leases[key] = taken
        # Else another thread took in the next window meanwhile: this window has
        # ended, and its lease must not replace that one.
        return taken

    @staticmethod
    def _verdict(policy: Policy, used: list[tuple[int, float]]) -> Verdict:
        now = time.time()  # after any take: its window ends a second from then, not before
        tightest: tuple[int, int, str] | None = None  # remaining, reset seconds, name
        refused, retry_after = "", 0
        for name, item, (remaining, expires_at) in zip(
            policy.names, policy.items, used, strict=True
        ):
            reset = max(1, math.ceil(expires_at - now))
            if remaining < 0:
                refused = refused or item.GRANULARITY.name
                retry_after = max(retry_after, reset)
            if tightest is None or remaining < tightest[0]:
                tightest = (remaining, reset, name)
        if tightest is None:  # parse_many never returns an empty list
            raise ValueError("a rate limit policy without limits")
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
