import math
import random
from datetime import date
from fractions import Fraction

import pytest

from rates_platform.rates.domain import (
    Locations,
    RatesQuery,
    average,
    daily_series,
    parse_rates_query,
)
from rates_platform.rates.errors import (
    DateRangeTooLong,
    InvalidDate,
    InvalidDateRange,
    InvalidRatesQuery,
    MissingParameter,
    UnknownLocation,
)

VALID = {
    "date_from": "2021-01-01",
    "date_to": "2021-01-31",
    "orig_code": "CNGGZ",
    "dest_code": "EETLL",
}


def test_valid_query() -> None:
    query = parse_rates_query(VALID, 366)
    assert query == RatesQuery(date(2021, 1, 1), date(2021, 1, 31), "CNGGZ", "EETLL")
    assert query.days == 31


def test_aliases() -> None:
    params = {"date_from": "2021-01-01", "date_to": "2021-01-01", "origin": "a", "destination": "b"}
    query = parse_rates_query(params, 366)
    assert (query.origin, query.destination) == ("a", "b")


def test_conflicting_alias_is_refused() -> None:
    with pytest.raises(InvalidRatesQuery) as err:
        parse_rates_query({**VALID, "origin": "OTHER"}, 366)
    assert err.value.parameter == "orig_code"


@pytest.mark.parametrize("missing", sorted(VALID))
def test_each_parameter_is_required(missing: str) -> None:
    params = {k: v for k, v in VALID.items() if k != missing}
    with pytest.raises(MissingParameter) as err:
        parse_rates_query(params, 366)
    assert err.value.parameter == missing


@pytest.mark.parametrize(
    "bad", ["2021-02-30", "2021-1-1", "20210101", "yesterday", "2021-01-01T00"]
)
def test_malformed_dates(bad: str) -> None:
    with pytest.raises(InvalidDate) as err:
        parse_rates_query({**VALID, "date_to": bad}, 366)
    assert err.value.parameter == "date_to"


def test_reversed_range() -> None:
    with pytest.raises(InvalidDateRange):
        parse_rates_query({**VALID, "date_from": "2021-02-01"}, 366)


def test_range_limit_is_inclusive() -> None:
    assert parse_rates_query(VALID, 31).days == 31
    with pytest.raises(DateRangeTooLong, match="32 days; at most 31"):
        parse_rates_query({**VALID, "date_to": "2021-02-01"}, 31)


def test_location_syntax() -> None:
    with pytest.raises(InvalidRatesQuery) as err:
        parse_rates_query({**VALID, "dest_code": "x' OR 1=1"}, 366)
    assert err.value.parameter == "dest_code"


LOCATIONS = Locations(
    ports={"P1": "leaf", "P2": "mid", "P3": "other"},
    regions={"root": None, "mid": "root", "leaf": "mid", "other": None, "empty": "root"},
)


@pytest.mark.parametrize(
    ("origin", "destination", "keys"),
    [
        ("P1", "P2", (["P1"], ["P2"])),  # a lane
        ("root", "other", (["root"], ["other"])),  # region pairs are aggregated whole
        ("P3", "mid", (["P3"], ["leaf", "mid"])),  # port to a region and all below it
        ("root", "P3", (["empty", "leaf", "mid", "root"], ["P3"])),
        ("P1", "empty", (["P1"], ["empty"])),
    ],
)
def test_total_keys(origin: str, destination: str, keys: tuple[list[str], list[str]]) -> None:
    assert LOCATIONS.total_keys(origin, destination) == keys


@pytest.mark.parametrize(
    ("origin", "destination", "parameter"),
    [("nowhere", "P1", "orig_code"), ("P1", "nowhere", "dest_code")],
)
def test_unknown_location_names_the_parameter(
    origin: str, destination: str, parameter: str
) -> None:
    with pytest.raises(UnknownLocation) as err:
        LOCATIONS.total_keys(origin, destination)
    assert err.value.parameter == parameter


def test_cyclic_tree_terminates() -> None:
    cyclic = Locations({"P": "a"}, {"a": "b", "b": "a"})
    assert cyclic.total_keys("P", "b") == (["P"], ["a", "b"])


def test_average_needs_three_prices_and_is_the_exact_mean() -> None:
    assert average(200, 2) is None
    assert average(3463, 3) == 1154.3333333333333  # the original service's value
    assert average(3465, 3) == 1155
    assert average(1, 8) == 0.125  # not rounded to cents


def test_daily_series_fills_gaps_newest_first() -> None:
    query = RatesQuery(date(2021, 1, 1), date(2021, 1, 3), "a", "b")
    series = daily_series(query, [(date(2021, 1, 2), 3, 300), (date(2021, 1, 3), 1, 5)])
    assert [(r.day.day, r.price, r.count) for r in series] == [
        (3, None, 1),
        (2, 100.0, 3),
        (1, None, 0),
    ]


@pytest.mark.parametrize(
    "days",
    [
        [date(1, 1, 3), date(1, 1, 2), date.min],
        [date.max, date(9999, 12, 30), date(9999, 12, 29)],
    ],
)
def test_daily_series_reaches_the_ends_of_the_calendar(days: list[date]) -> None:
    """0001-01-01 and 9999-12-31 are valid dates of a query: no step past either."""
    query = RatesQuery(days[-1], days[0], "a", "b")
    series = daily_series(query, [(days[-1], 3, 30)])
    assert [(r.day, r.price, r.count) for r in series] == [
        (days[0], None, 0),
        (days[1], None, 0),
        (days[2], 10.0, 3),
    ]


def test_average_is_the_float_nearest_to_the_exact_mean() -> None:
    rng = random.Random(5)
    for _ in range(20_000):
        count = rng.randint(3, 5_000)
        total = rng.randint(0, 10_000 * count)
        exact = Fraction(total, count)
        got = average(total, count)
        assert got is not None
        # No other float is closer: the neighbours on both sides are farther away.
        error = abs(Fraction(got) - exact)
        assert error <= abs(Fraction(math.nextafter(got, math.inf)) - exact), (total, count)
        assert error <= abs(Fraction(math.nextafter(got, -math.inf)) - exact), (total, count)
