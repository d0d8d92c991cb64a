"""Use cases of the rates capability: validate, then sum pre-aggregated daily totals."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from rates_platform.db import Database
from rates_platform.rates import queries
from rates_platform.rates.domain import DayRate, Locations, daily_series, parse_rates_query

# How long a worker trusts its copy of ports and regions; bounds staleness after a load.
LOCATIONS_TTL_SECONDS = 1.0


class RatesService:
    def __init__(
        self, db: Database, max_range_days: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._max_range_days = max_range_days
        self._clock = clock
        self._locations: Locations | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def locations(self) -> Locations:
        with self._lock:
            now = self._clock()
            if self._locations is None or now - self._loaded_at >= LOCATIONS_TTL_SECONDS:
                self._locations = Locations(*self._db.read(queries.locations))
                self._loaded_at = now
            return self._locations

    def daily_rates(self, params: Mapping[str, str]) -> list[DayRate]:
        """Validate the query, then average prices per day; raises InvalidRatesQuery."""
        query = parse_rates_query(params, self._max_range_days)
        orig, dest = self.locations().total_keys(query.origin, query.destination)
        totals = self._db.read(
            lambda conn: queries.daily_totals(conn, orig, dest, query.date_from, query.date_to)
        )
        return daily_series(query, totals)
