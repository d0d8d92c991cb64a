"""Use cases of the rates capability: validate, then read pre-aggregated daily totals."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from rates_platform.db import Database
from rates_platform.rates import queries
from rates_platform.rates.domain import DayRate, daily_series, parse_rates_query, require_known

# How long a worker trusts its list of ports and regions; bounds staleness after a load.
LOCATIONS_TTL_SECONDS = 1.0


class RatesService:
    def __init__(
        self, db: Database, max_range_days: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._max_range_days = max_range_days
        self._clock = clock
        self._known: frozenset[str] = frozenset()
        self._known_at: float | None = None
        self._lock = threading.Lock()

    def known_locations(self) -> frozenset[str]:
        with self._lock:
            now = self._clock()
            if self._known_at is None or now - self._known_at >= LOCATIONS_TTL_SECONDS:
                self._known, self._known_at = self._db.read(queries.known_locations), now
            return self._known

    def daily_rates(self, params: Mapping[str, str]) -> list[DayRate]:
        """Validate the query, then average prices per day; raises InvalidRatesQuery."""
        query = parse_rates_query(params, self._max_range_days)
        known = self.known_locations()
        orig = require_known("orig_code", query.origin, known)
        dest = require_known("dest_code", query.destination, known)
        totals = self._db.read(
            lambda conn: queries.daily_totals(conn, orig, dest, query.date_from, query.date_to)
        )
        return daily_series(query, totals)
