"""Pure rules of the rates API: query validation, known locations, daily series.

Nothing here touches Flask or the database, so every rule is unit-testable.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

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
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class RatesQuery:
    date_from: date
    date_to: date
    origin: str
    destination: str

    @property
    def days(self) -> int:
        return (self.date_to - self.date_from).days + 1


@dataclass(frozen=True)
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


def require_known(parameter: str, location: str, known: Collection[str]) -> str:
    """The location itself, or UnknownLocation naming the parameter."""
    if location not in known:
        raise UnknownLocation(
            parameter, f"{location!r} is neither a known port code nor a region slug"
        )
    return location


def average(total: int, count: int) -> float | None:
    """Average in cents, rounded half-up; None when too few prices to be meaningful."""
    if count < MIN_PRICES_FOR_AVERAGE:
        return None
    return float((Decimal(total) / count).quantize(_CENT, rounding=ROUND_HALF_UP))


def daily_series(query: RatesQuery, totals: Iterable[tuple[date, int, int]]) -> list[DayRate]:
    """One entry per day of the range, newest first; days without prices count 0."""
    by_day = {day: (count, total) for day, count, total in totals}
    series = []
    for offset in range(query.days):
        day = query.date_to - timedelta(days=offset)
        count, total = by_day.get(day, (0, 0))
        series.append(DayRate(day=day, price=average(total, count), count=count))
    return series
