"""A value loaded on demand and trusted for a fixed time; safe across threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Expiring(Generic[T]):
    """Stale-while-revalidate: once a value exists, a reload holds up its one caller.

    When the value is older than ttl, one caller reloads it while concurrent callers
    keep the stale value, so a slow or failing load (a hung database, a store
    outage) costs one request, not every request queued on a lock. With no value
    yet, or after invalidate(), callers wait for the one load.
    """

    def __init__(
        self, load: Callable[[], T], ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load, self._ttl, self._clock = load, ttl, clock
        self._entry: tuple[T, float] | None = None  # (value, loaded at), swapped whole
        self._loading = threading.Lock()

    def _fresh(self) -> T | None:
        entry = self._entry
        if entry is not None and self._clock() - entry[1] < self._ttl:
            return entry[0]
        return None

    def get(self) -> T:
        """The cached value, reloaded (once, by one caller) when older than ttl."""
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        stale = self._entry
        if stale is not None and not self._loading.acquire(blocking=False):
            return stale[0]
        if stale is None:
            self._loading.acquire()
        try:
            fresh = self._fresh()  # loaded by another caller while we waited
            if fresh is not None:
                return fresh
            now = self._clock()
            value = self._load()
            self._entry = (value, now)
            return value
        finally:
            self._loading.release()

    def invalidate(self) -> None:
        self._entry = None
