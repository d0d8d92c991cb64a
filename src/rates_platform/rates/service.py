"""Use cases of the rates capability: validate, expand locations, aggregate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from rates_platform.db import Database
from rates_platform.rates import queries
from rates_platform.rates.domain import DayRate, RegionTree, daily_series, parse_rates_query

# How long a worker trusts its copy of the region tree; bounds staleness after a load.
REGION_TREE_TTL_SECONDS = 1.0


class RatesService:
    def __init__(
        self, db: Database, max_range_days: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._max_range_days = max_range_days
        self._clock = clock
        self._tree: RegionTree | None = None
        self._tree_loaded_at = 0.0
        self._lock = threading.Lock()

    def region_tree(self) -> RegionTree:
        with self._lock:
            now = self._clock()
            if self._tree is None or now - self._tree_loaded_at >= REGION_TREE_TTL_SECONDS:
                ports, regions = self._db.read(queries.locations)
                self._tree, self._tree_loaded_at = RegionTree(ports, regions), now
            return self._tree

    def daily_rates(self, params: Mapping[str, str]) -> list[DayRate]:
        """Validate the query, then average prices per day; raises InvalidRatesQuery."""
        query = parse_rates_query(params, self._max_range_days)
        tree = self.region_tree()
        orig = tree.ports_for("orig_code", query.origin)
        dest = tree.ports_for("dest_code", query.destination)
        totals = self._db.read(
            lambda conn: queries.daily_totals(conn, orig, dest, query.date_from, query.date_to)
        )
        return daily_series(query, totals)
