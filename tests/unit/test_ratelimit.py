"""Rate-limit rules and the shared counter store (a real SQLite file, real processes)."""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from limits import parse
from limits.strategies import FixedWindowRateLimiter

from rates_platform.http import protection
from rates_platform.http.ratelimit import (
    DIRECTORY_VARIABLE,
    LEASE_FRACTION,
    RAM_DIRECTORY,
    Ask,
    Policy,
    RateLimiter,
    SharedFileStorage,
    client_address,
    new_instance_directory,
)
from rates_platform.settings import Settings

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.5", "198.51.100.1", "198.51.100.1"),  # trusted proxy: its client
        ("10.0.0.5", "1.2.3.4, 198.51.100.1", "198.51.100.1"),  # left part: client-forged
        ("10.0.0.5", "198.51.100.1, 10.1.1.1", "198.51.100.1"),  # a chain of our proxies
        ("10.0.0.5", "10.2.2.2, 10.1.1.1", "10.2.2.2"),  # all ours: the farthest
        ("10.0.0.5", "198.51.100.1, junk", "10.0.0.5"),  # junk stops the walk at the proxy
        ("fd00::1", "2001:db8::7", "2001:db8::7"),
        ("10.0.0.5", None, "10.0.0.5"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_address("10.0.0.5", "198.51.100.1", ()) == "10.0.0.5"


def _hammer(directory: str, hits: int) -> None:
    storage = SharedFileStorage(Path(directory))
    for _ in range(hits):
        storage.incr("shared", 60)


def test_counts_add_up_across_processes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(str(tmp_path), 300)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert SharedFileStorage(tmp_path).get("shared") == 900


def test_is_a_storage_the_limits_strategies_accept(tmp_path: Path) -> None:
    limiter = FixedWindowRateLimiter(SharedFileStorage(tmp_path))
    item = parse("3/minute")
    assert [limiter.hit(item, "client") for _ in range(4)] == [True, True, True, False]
    stats = limiter.get_window_stats(item, "client")
    assert stats.remaining == 0
    assert 55 < stats.reset_time - time.time() <= 60
    assert limiter.hit(item, "another client")


def test_a_window_starts_afresh_when_it_expires(tmp_path: Path) -> None:
    storage = SharedFileStorage(tmp_path)
    assert storage.incr("k", 1) == 1
    assert storage.incr("k", 1) == 2
    time.sleep(1.05)
    assert storage.incr("k", 1) == 1


def test_grants_never_pass_the_quota(tmp_path: Path) -> None:
    storage = SharedFileStorage(tmp_path)
    ask = Ask("k", 60, want=5, quota=7)
    assert [(t.granted, t.count) for t in storage.take_many([ask] * 1)] == [(5, 5)]
    assert storage.take_many([ask])[0].granted == 2
    assert storage.take_many([ask])[0].granted == 0
    other = storage.take_many([Ask("other", 60, 3, 7), ask])
    assert [t.granted for t in other] == [3, 0]  # one statement, each window on its own


def _spend(directory: str, attempts: int, allowed: Any) -> None:
    limiter = RateLimiter(SharedFileStorage(Path(directory)), "1000/minute")
    policy = limiter.policy_for(None)
    assert policy is not None
    ok = sum(limiter.hit("addr:x", policy).allowed for _ in range(attempts))
    with allowed.get_lock():
        allowed.value += ok


def test_leases_never_admit_more_than_the_quota_across_processes(tmp_path: Path) -> None:
    """3 processes, 600 attempts each, 1000 allowed a minute, leases of 1000 / LEASE_FRACTION."""
    context = multiprocessing.get_context("spawn")
    allowed = context.Value("i", 0)
    workers = [context.Process(target=_spend, args=(str(tmp_path), 600, allowed)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    # Never more than the quota; at most one unspent lease per process short of it.
    unspent = 1000 // LEASE_FRACTION - 1
    assert 1000 - 3 * unspent <= allowed.value <= 1000


def test_headers_and_refusal(tmp_path: Path) -> None:
    limiter = RateLimiter(SharedFileStorage(tmp_path), "3/second;5/minute")
    policy = limiter.policy_for(None)
    assert policy is not None
    assert policy.header == '"second";q=3;w=1, "minute";q=5;w=60'
    verdicts = [limiter.hit("addr:a", policy) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[0].headers["RateLimit"] == '"second";r=2;t=1'
    refused = verdicts[3]
    assert refused.reason == "second"
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["RateLimit"] == '"second";r=0;t=1'
    time.sleep(1.05)  # the second's window is over; the minute's is not
    assert [limiter.hit("addr:a", policy).allowed for _ in range(2)] == [True, False]
    minute = limiter.hit("addr:a", policy)
    assert minute.reason == "minute"
    assert 55 <= int(minute.headers["Retry-After"]) <= 60


def test_a_key_override_replaces_the_default(tmp_path: Path) -> None:
    limiter = RateLimiter(SharedFileStorage(tmp_path), "")
    assert limiter.policy_for(None) is None  # no RATE_LIMIT: unlimited
    override = limiter.policy_for("2/minute")
    assert isinstance(override, Policy)
    assert limiter.policy_for("2/minute") is override  # parsed once
    assert [limiter.hit("key:1", override).allowed for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(
    ("spec", "label"),
    [
        ("100/second;3000/minute", "small quota: every hit writes"),
        ("5000/second;300000/minute", "large quota: mostly leases"),
    ],
)
def test_cost_of_one_hit_is_small(tmp_path: Path, spec: str, label: str) -> None:
    """The measured cost per request (printed; bounded loosely, the machine is shared)."""
    limiter = RateLimiter(SharedFileStorage(tmp_path), spec)
    policy = limiter.policy_for(None)
    assert policy is not None
    hits = 5000
    started = time.perf_counter()
    for n in range(hits):
        limiter.hit(f"addr:{n % 50}", policy)
    per_hit = (time.perf_counter() - started) / hits
    print(f"rate-limit hit, two windows, {label}: {per_hit * 1e6:.1f} us")
    assert per_hit < 0.002


def test_the_default_public_unlimited_path_installs_no_guard() -> None:
    """No RATE_LIMIT, AUTH_MODE=public, no FRONT_DOOR_ID: not one more hook per request."""
    app = Flask(__name__)
    protection.register(app, Settings(database_url="postgresql://unused/x"), database=None)  # type: ignore[arg-type]
    assert app.before_request_funcs == {}
    assert app.after_request_funcs == {}
    limited = Flask(__name__)
    protection.register(
        limited,
        Settings(database_url="postgresql://unused/x", rate_limit="5/second"),
        None,  # type: ignore[arg-type]
    )
    assert len(limited.before_request_funcs[None]) == 1


def test_window_keys_are_the_ones_limits_makes() -> None:
    policy = Policy("5/second;10/2minute")
    assert [before + "addr:1.2.3.4" + after for before, after in policy.keys] == [
        item.key_for("addr:1.2.3.4") for item in policy.items
    ]


_ADDRESSES = st.sampled_from(
    ["10.0.0.1", "10.9.9.9", "198.51.100.1", "203.0.113.7", "2001:db8::1", "fd00::5", "junk"]
)


@given(peer=_ADDRESSES, chain=st.lists(_ADDRESSES, max_size=6))
def test_a_client_can_never_choose_its_identity_past_an_untrusted_hop(
    peer: str, chain: list[str]
) -> None:
    """Whatever the header holds, the result is the peer or an entry that no untrusted
    hop (which could have written the entries to its left) stands to the right of."""
    result = client_address(peer, ", ".join(chain), PROXIES)
    if peer not in {"10.0.0.1", "10.9.9.9", "fd00::5"}:
        assert result == peer  # not a trusted proxy: the header is ignored
        return
    assert result == peer or result in chain
    if result != peer:
        right_of_it = chain[len(chain) - 1 - chain[::-1].index(result) + 1 :]
        assert all(entry in {"10.0.0.1", "10.9.9.9", "fd00::5"} for entry in right_of_it)


def _limited_app(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv(DIRECTORY_VARIABLE, str(directory))
    app = Flask(__name__)
    app.add_url_rule("/", "root", lambda: "ok")
    app.add_url_rule("/healthz", "healthz", lambda: "ok")
    protection.register(
        app,
        Settings(database_url="postgresql://unused/x", rate_limit="2/minute"),
        None,  # type: ignore[arg-type]
    )
    return app


def test_the_probes_are_never_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform probes from one address; a 429 would fail liveness and restart replicas."""
    client = _limited_app(tmp_path, monkeypatch).test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]
    assert {client.get("/healthz").status_code for _ in range(5)} == {200}


def test_a_lost_store_lets_requests_through_and_heals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limits directory deleted under a running server (measured: 77 of 150
    requests were 500s with a traceback each): requests are served, and a new
    thread's counts start afresh in a recreated directory."""
    directory = tmp_path / "limits"
    directory.mkdir()
    app = _limited_app(directory, monkeypatch)
    shutil.rmtree(directory)
    statuses: list[int] = []
    worker = threading.Thread(
        target=lambda: statuses.extend(app.test_client().get("/").status_code for _ in range(3))
    )
    worker.start()
    worker.join()
    assert statuses == [200, 200, 429]
    shutil.rmtree(directory)
    directory.write_text("")  # now no store can be made there at all: still served
    other = threading.Thread(target=lambda: statuses.append(app.test_client().get("/").status_code))
    other.start()
    other.join()
    assert statuses[-1] == 200


class _CountingDatabase:
    """Stands in for the database of KeyLookup: no key exists; counts the lookups."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, work: Any) -> None:
        self.reads += 1


def test_failed_credentials_count_against_the_address_and_stop_costing_lookups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh made-up key per request was never limited (measured: 300 requests from
    one address with RATE_LIMIT=5/second, 300 401s and 300 queries)."""
    monkeypatch.setenv(DIRECTORY_VARIABLE, str(tmp_path))
    database = _CountingDatabase()
    app = Flask(__name__)
    app.add_url_rule("/rates", "rates.rates", lambda: "ok")
    settings = Settings(
        database_url="postgresql://unused/x", rate_limit="3/minute", auth_mode="api-key"
    )
    protection.register(app, settings, database)  # type: ignore[arg-type]
    client = app.test_client()
    statuses = [
        client.get("/rates", headers={"X-API-Key": f"rk_{n:012d}_{'a' * 43}"}).status_code
        for n in range(20)
    ]
    assert statuses == [401] * 3 + [429] * 17
    assert database.reads == 4  # the three within the limit, and the one that went over
    assert client.get("/rates").status_code == 429  # no key at all: the same address


@pytest.mark.skipif(
    not os.access(RAM_DIRECTORY, os.W_OK), reason=f"{RAM_DIRECTORY} is not writable here"
)
def test_counters_live_in_ram_unless_tmpdir_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is written on every lease: tmpfs, not a disk-backed /tmp, by default."""
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    for name in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.delenv(name, raising=False)
    made = Path(new_instance_directory())
    try:
        assert made.parent == Path(RAM_DIRECTORY)
        assert made.name.startswith("rates-limits-")
        assert made.stat().st_mode & 0o777 == 0o700
    finally:
        made.rmdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert Path(new_instance_directory()).parent == tmp_path


def test_the_counters_file_has_a_ceiling_and_makes_room_once_windows_end(
    tmp_path: Path,
) -> None:
    """A flood of new clients fills the file to its cap, not the file system: new clients
    then fail (the limiter fails open), and the next write after their windows end purges."""
    cap = 64 * 1024
    storage = SharedFileStorage(tmp_path, max_bytes=cap)
    with pytest.raises(sqlite3.OperationalError) as full:
        for n in range(20_000):
            storage.take_many([Ask(f"LIMITER/addr:10.0.{n // 256}.{n % 256}/5/1/second", 1, 1, 5)])
    assert full.value.sqlite_errorcode == sqlite3.SQLITE_FULL
    assert 100 < n < 20_000  # it took many clients, and stopped long before the loop's end
    conn = sqlite3.connect(tmp_path / "ratelimit.sqlite3")
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    assert pages * page_size <= cap
    time.sleep(1.1)  # every window has ended
    assert storage.take_many([Ask("LIMITER/addr:192.0.2.1/5/1/second", 1, 1, 5)])[0].granted == 1


def test_two_threads_refilling_one_window_waste_no_quota(tmp_path: Path) -> None:
    """Both threads of a worker find the lease spent and take one each: both are kept.
    (Keeping only the last one lost a lease per collision: 4 % of the window each time,
    and the bench's limited lanes met 429s before their quota.)"""

    class RacingStorage(SharedFileStorage):
        raced = False

        def take_many(self, asks: Any) -> Any:
            if not self.raced:  # another thread takes for the same window meanwhile
                self.raced = True
                other = threading.Thread(target=limiter.hit, args=("addr:a", policy))
                other.start()
                other.join()
            return super().take_many(asks)

    limiter = RateLimiter(RacingStorage(tmp_path), "1000/minute")
    policy = limiter.policy_for(None)
    assert policy is not None and policy.leases == [1000 // LEASE_FRACTION] != [1]
    admitted = 1  # the other thread's request
    while limiter.hit("addr:a", policy).allowed:
        admitted += 1
    assert admitted == 1000


def test_a_full_counters_file_is_not_scanned_on_every_take(tmp_path: Path) -> None:
    """While no window has ended, every new client finds the file full: looking for expired
    counters scans them all under the writers' lock (some 13 ms at the 16 MiB cap), so it
    is done once a second, not once per take (that cut an instance to ~75 takes/s)."""
    storage = SharedFileStorage(tmp_path, max_bytes=64 * 1024)
    n = 0
    with pytest.raises(sqlite3.OperationalError):
        for n in range(20_000):
            storage.take_many([Ask(f"LIMITER/addr:10.0.{n // 256}.{n % 256}/5/1/minute", 60, 1, 5)])
    statements: list[str] = []
    storage._conn().set_trace_callback(statements.append)
    for m in range(n + 1, n + 51):
        with pytest.raises(sqlite3.OperationalError):
            storage.take_many([Ask(f"LIMITER/addr:10.1.{m // 256}.{m % 256}/5/1/minute", 60, 1, 5)])
    assert sum(s.startswith("DELETE") for s in statements) <= 1


def test_a_lease_from_an_ended_window_does_not_replace_the_next_windows(
    tmp_path: Path,
) -> None:
    """A thread stalls after its take until the window ends; another thread takes in the
    next window meanwhile. The stalled thread's lease (of an ended window) must not
    replace the new one, or the new window loses a lease and refuses before its quota."""

    class StallingStorage(SharedFileStorage):
        stalled = False

        def take_many(self, asks: Any) -> Any:
            taken = super().take_many(asks)
            if not self.stalled:
                self.stalled = True
                time.sleep(max(0.0, taken[0].expires_at - time.time()) + 0.02)
                other = threading.Thread(target=limiter.hit, args=("addr:a", policy))
                other.start()
                other.join()
            return taken

    limiter = RateLimiter(StallingStorage(tmp_path), "100/second")
    policy = limiter.policy_for(None)
    assert policy is not None and policy.leases == [100 // LEASE_FRACTION] != [1]
    assert limiter.hit("addr:a", policy).allowed  # counted in the window that has ended
    admitted = 1  # the other thread's request, in the next window
    while limiter.hit("addr:a", policy).allowed:
        admitted += 1
    assert admitted == 100


@pytest.mark.skipif(
    not os.access(RAM_DIRECTORY, os.W_OK), reason=f"{RAM_DIRECTORY} is not writable here"
)
def test_an_empty_tmpdir_keeps_the_counters_in_ram(monkeypatch: pytest.MonkeyPatch) -> None:
    """TMPDIR= (set, but empty: as a compose file's blank entry makes) names no directory,
    and tempfile skips it: the counters still go to tmpfs, not a disk-backed /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", None)
    for name in ("TEMP", "TMP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMPDIR", "")
    made = Path(new_instance_directory())
    try:
        assert made.parent == Path(RAM_DIRECTORY)
    finally:
        made.rmdir()


def test_a_refusal_does_not_drop_a_lease_another_thread_just_took(tmp_path: Path) -> None:
    """One thread takes the window's last lease; another, whose take came after it, is
    refused and must not drop that lease: its tokens are quota nobody else can spend."""

    class RacingStorage(SharedFileStorage):
        raced = False

        def take_many(self, asks: Any) -> Any:
            if not self.raced:  # another thread takes the last lease first
                self.raced = True
                other = threading.Thread(target=limiter.hit, args=("addr:a", policy))
                other.start()
                other.join()
            return super().take_many(asks)

    storage = RacingStorage(tmp_path)
    limiter = RateLimiter(storage, "100/minute")
    policy = limiter.policy_for(None)
    assert policy is not None and policy.leases == [100 // LEASE_FRACTION] != [1]
    key = policy.keys[0][0] + "addr:a" + policy.keys[0][1]
    storage.raced = True
    assert storage.take_many([Ask(key, 60, 96, 100)])[0].granted == 96  # other workers'
    storage.raced = False
    assert not limiter.hit("addr:a", policy).allowed  # the other thread took the last lease
    admitted = 1  # the other thread's request
    while limiter.hit("addr:a", policy).allowed:
        admitted += 1
    assert admitted == 4


def test_workers_starting_together_all_open_the_counters(tmp_path: Path) -> None:
    """Four at a time opening a new counters file: switching it to WAL together failed
    some of them with "database is locked" (18 of 800 opens), a worker's start failing."""
    errors: list[Exception] = []
    for round_ in range(200):
        directory = tmp_path / str(round_)
        directory.mkdir()
        barrier = threading.Barrier(4)

        def start(directory: Path = directory, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                SharedFileStorage(directory)
            except sqlite3.Error as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
