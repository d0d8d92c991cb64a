import threading
import time

import pytest

from rates_platform.expiring import Expiring


def test_loads_once_per_ttl_and_again_when_invalidated() -> None:
    now, loads = [100.0], []
    cache = Expiring(lambda: loads.append(now[0]) or len(loads), ttl=1.0, clock=lambda: now[0])
    assert (cache.get(), cache.get()) == (1, 1)
    now[0] += 0.999
    assert cache.get() == 1
    now[0] += 0.001
    assert cache.get() == 2
    cache.invalidate()
    assert cache.get() == 3
    assert loads == [100.0, 101.0, 101.0]


def test_concurrent_readers_share_one_load() -> None:
    loads = []

    def slow_load() -> int:
        loads.append(1)
        time.sleep(0.1)
        return 7

    cache = Expiring(slow_load, ttl=60)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [7] * 8 and len(loads) == 1


def test_a_slow_reload_holds_up_its_caller_only() -> None:
    now, release, calls = [0.0], threading.Event(), []

    def load() -> int:
        calls.append(1)
        if len(calls) > 1:
            release.wait(5)
        return len(calls)

    cache = Expiring(load, ttl=1.0, clock=lambda: now[0])
    assert cache.get() == 1
    now[0] = 2.0  # stale
    reloader = threading.Thread(target=cache.get)
    reloader.start()
    time.sleep(0.05)
    started = time.monotonic()
    assert cache.get() == 1  # the stale value, at once, while the reload is stuck
    assert time.monotonic() - started < 0.5
    release.set()
    reloader.join()
    assert cache.get() == 2 and len(calls) == 2


def test_a_failed_reload_raises_for_its_caller_and_keeps_the_stale_value() -> None:
    now, fail = [0.0], [False]

    def load() -> str:
        if fail[0]:
            raise RuntimeError("store down")
        return "v1"

    cache = Expiring(load, ttl=1.0, clock=lambda: now[0])
    assert cache.get() == "v1"
    now[0], fail[0] = 2.0, True
    with pytest.raises(RuntimeError, match="store down"):
        cache.get()
    fail[0] = False
    assert cache.get() == "v1"  # reloaded now that the store answers
