"""A value loaded on demand and trusted for a fixed time; safe across threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Expiring(Generic[T]):
    def __init__(
        self, load: Callable[[], T], ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load, self._ttl, self._clock = load, ttl, clock
        self._value: T | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> T:
        """The cached value, reloaded (under the lock, once) when older than ttl."""
        with self._lock:
            now = self._clock()
            if self._value is None or now - self._loaded_at >= self._ttl:
                self._value, self._loaded_at = self._load(), now
            return self._value

    def invalidate(self) -> None:
        with self._lock:
            self._value = None
