"""Use cases of the rates capability: validate, then sum pre-aggregated daily totals."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from rates_platform.db import Database
from rates_platform.expiring import Expiring
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
        self._locations = Expiring(
            lambda: Locations(*db.read(queries.locations)), LOCATIONS_TTL_SECONDS, clock
        )

    def locations(self) -> Locations:
        return self._locations.get()

    def daily_rates(self, params: Mapping[str, str]) -> list[DayRate]:
        """Validate the query, then average prices per day; raises InvalidRatesQuery."""
        query = parse_rates_query(params, self._max_range_days)
        orig, dest = self.locations().total_keys(query.origin, query.destination)
        totals = self._db.rows(
            *queries.daily_totals_statement(orig, dest, query.date_from, query.date_to)
        )
        return daily_series(query, totals)
