"""Pure rules of the rates API: query validation, locations, daily series.

Nothing here touches Flask or the database, so every rule is unit-testable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from rates_platform.rates.errors import (
    DateRangeTooLong,
    InvalidDate,
    InvalidDateRange,
    InvalidRatesQuery,
    MissingParameter,
    UnknownLocation,
)

# Fewer prices than this on a day are too few to publish an average.
MIN_PRICES_FOR_AVERAGE = 3
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_LOCATION = re.compile(r"[A-Za-z0-9_\-]{1,64}")


@dataclass(frozen=True)
class RatesQuery:
    date_from: date
    date_to: date
    origin: str
    destination: str

    @property
    def days(self) -> int:
        return (self.date_to - self.date_from).days + 1


@dataclass(slots=True)  # built 31+ times per request: slots, not frozen, is cheaper
class DayRate:
    day: date
    price: float | None
    count: int


def _one_of(params: Mapping[str, str], name: str, alias: str | None = None) -> str:
    value = params.get(name)
    if alias is not None and (other := params.get(alias)) is not None:
        if value is not None and value != other:
            raise InvalidRatesQuery(name, f"'{name}' and '{alias}' disagree; send only one")
        value = other
    if value is None or value.strip() == "":
        raise MissingParameter(name, f"'{name}' is required")
    return value.strip()


def _parse_date(name: str, raw: str) -> date:
    if not _ISO_DATE.fullmatch(raw):
        raise InvalidDate(name, f"'{name}' must be a date as YYYY-MM-DD, got {raw[:40]!r}")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidDate(name, f"'{name}' is not a calendar date: {raw!r}") from None


def _parse_location(name: str, raw: str) -> str:
    if not _LOCATION.fullmatch(raw):
        raise InvalidRatesQuery(
            name, f"'{name}' must be a port code or region slug (letters, digits, '_', '-')"
        )
    return raw


def parse_rates_query(params: Mapping[str, str], max_range_days: int) -> RatesQuery:
    """Validate raw query parameters; raise an InvalidRatesQuery naming the bad one."""
    date_from = _parse_date("date_from", _one_of(params, "date_from"))
    date_to = _parse_date("date_to", _one_of(params, "date_to"))
    if date_from > date_to:
        raise InvalidDateRange("date_from", "'date_from' must not be after 'date_to'")
    query = RatesQuery(
        date_from=date_from,
        date_to=date_to,
        origin=_parse_location("orig_code", _one_of(params, "orig_code", "origin")),
        destination=_parse_location("dest_code", _one_of(params, "dest_code", "destination")),
    )
    if query.days > max_range_days:
        raise DateRangeTooLong(
            "date_to", f"the range covers {query.days} days; at most {max_range_days} are allowed"
        )
    return query


class Locations:
    """Ports and the region tree, and which daily_totals keys answer a pair of them.

    daily_totals holds, per day: each lane; each port to (and from) the ports directly
    in a region; and each region pair, covering every port below both. So a pair that
    mixes a port and a region sums the rows of that region and all regions below it.
    """

    def __init__(self, ports: Mapping[str, str], regions: Mapping[str, str | None]) -> None:
        self._ports = frozenset(ports)
        children: dict[str, list[str]] = {}
        for slug, parent in regions.items():
            if parent is not None:
                children.setdefault(parent, []).append(slug)
        self._subtree: dict[str, tuple[str, ...]] = {}
        for slug in regions:
            below, stack = {slug}, [slug]
            while stack:  # iterative, and stops even if the data ever holds a cycle
                for child in children.get(stack.pop(), ()):
                    if child not in below:
                        below.add(child)
                        stack.append(child)
            self._subtree[slug] = tuple(sorted(below))

    def _require(self, parameter: str, location: str) -> str:
        if location not in self._ports and location not in self._subtree:
            raise UnknownLocation(
                parameter, f"{location!r} is neither a known port code nor a region slug"
            )
        return location

    def total_keys(self, origin: str, destination: str) -> tuple[list[str], list[str]]:
        """The orig_key and dest_key values whose rows sum to this pair's daily totals."""
        orig = self._require("orig_code", origin)
        dest = self._require("dest_code", destination)
        orig_is_port, dest_is_port = orig in self._ports, dest in self._ports
        if orig_is_port and not dest_is_port:
            return [orig], list(self._subtree[dest])
        if dest_is_port and not orig_is_port:
            return list(self._subtree[orig]), [dest]
        return [orig], [dest]


def average(total: int, count: int) -> float | None:
    """The mean price as the float nearest to total / count (the original service's
    contract: e.g. 1154.3333333333333, not 1154.33); None when too few prices to be
    meaningful. Python divides integers with correct rounding, so this is exact."""
    if count < MIN_PRICES_FOR_AVERAGE:
        return None
    return total / count


def daily_series(query: RatesQuery, totals: Iterable[tuple[date, int, int]]) -> list[DayRate]:
    """One entry per day of the range, newest first; days without prices count 0."""
    by_day = {day: (count, total) for day, count, total in totals}
    no_prices, one_day, first = (0, 0), timedelta(days=1), query.date_from
    series, day = [], query.date_to
    while True:  # the hot loop of /rates: date steps, no conversions
        count, total = by_day.get(day, no_prices)
        series.append(DayRate(day, average(total, count), count))
        if day == first:  # never a step past it: 0001-01-01 has no day before
            return series
        day -= one_day
