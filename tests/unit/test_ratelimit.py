"""Rate-limit rules and the shared counter store (a real SQLite file, real processes)."""

from __future__ import annotations

import ipaddress
import multiprocessing
import time
from pathlib import Path

import pytest
from flask import Flask
from limits import parse
from limits.strategies import FixedWindowRateLimiter

from rates_platform.http import protection
from rates_platform.http.ratelimit import Policy, RateLimiter, SharedFileStorage, client_address
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
    assert storage.incr_many([("k", 1)])[0][0] == 1
    assert storage.incr_many([("k", 1)])[0][0] == 2
    time.sleep(1.05)
    count, expires_at = storage.incr_many([("k", 1)])[0]
    assert count == 1
    assert expires_at > time.time()


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


def test_cost_of_one_hit_is_small(tmp_path: Path) -> None:
    """The measured cost of the shared store (printed; bounded loosely, the machine is shared)."""
    limiter = RateLimiter(SharedFileStorage(tmp_path), "1000000/second;100000000/minute")
    policy = limiter.policy_for(None)
    assert policy is not None
    hits = 3000
    started = time.perf_counter()
    for n in range(hits):
        limiter.hit(f"addr:{n % 50}", policy)
    per_hit = (time.perf_counter() - started) / hits
    print(f"rate-limit hit, two windows: {per_hit * 1e6:.1f} us")
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
