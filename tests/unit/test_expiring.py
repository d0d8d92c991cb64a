import threading
import time

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
