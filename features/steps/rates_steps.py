"""Steps for rates.feature; expected averages are recomputed from db/rates.sql itself."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, timedelta
from functools import cache
from typing import Any

from behave import then, when

from rates_platform.schema import read_dump
from tests.support import SAMPLE


@when('I request "{path}"')
def request_path(context: Any, path: str) -> None:
    context.response = context.http.get(context.base + path, timeout=10)


@when('I request rates from "{origin}" to "{destination}" from {start} to {end}')
def request_rates(context: Any, origin: str, destination: str, start: str, end: str) -> None:
    request_path(
        context,
        f"/rates?date_from={start}&date_to={end}&orig_code={origin}&dest_code={destination}",
    )


@then("the response status is {status:d}")
def response_status(context: Any, status: int) -> None:
    assert context.response.status_code == status, context.response.text


@then('the JSON field "{field}" is "{value}"')
def json_field(context: Any, field: str, value: str) -> None:
    assert context.response.json()[field] == value


@then("the response body is exactly")
def body_is_exactly(context: Any) -> None:
    """Parsed JSON compared for equality, as the original service's own test does."""
    assert context.response.json() == json.loads(context.text), context.response.text


@then("there are {days:d} days, newest first")
def day_count(context: Any, days: int) -> None:
    listed = [r["day"] for r in context.response.json()["rates"]]
    assert len(listed) == days
    assert listed == sorted(listed, reverse=True)


@cache
def _sample() -> tuple[dict[str, set[str]], dict[tuple[str, str, str], list[int]]]:
    """Ports below each location (itself for a port), and prices by lane and day."""
    tables = read_dump(SAMPLE)
    parent = {row.split("\t")[0]: row.split("\t")[2].strip() for row in tables["regions"].rows}
    below: dict[str, set[str]] = defaultdict(set)
    for row in tables["ports"].rows:
        code, _name, region = row.rstrip("\n").split("\t")
        below[code].add(code)
        node: str | None = region
        while node and node != "\\N":
            below[node].add(code)
            node = parent.get(node)
    prices: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for row in tables["prices"].rows:
        orig, dest, day, price = row.rstrip("\n").split("\t")
        prices[orig, dest, day].append(int(price))
    return below, prices


@then('the averages match the prices stored for every port below "{origin}" and "{destination}"')
def averages_match(context: Any, origin: str, destination: str) -> None:
    below, prices = _sample()
    rates = context.response.json()["rates"]
    first = date.fromisoformat(rates[-1]["day"])
    for offset, rate in enumerate(reversed(rates)):
        day = (first + timedelta(days=offset)).isoformat()
        day_prices = [
            p for o in below[origin] for d in below[destination] for p in prices[o, d, day]
        ]
        assert rate["day"] == day, rate
        assert rate["count"] == len(day_prices), (rate, len(day_prices))
        mean = sum(day_prices) / len(day_prices) if len(day_prices) >= 3 else None
        assert rate["price"] == mean, (rate, mean)


@then('the response is a problem of type "{kind}" about "{parameter}"')
def problem_of_type(context: Any, kind: str, parameter: str) -> None:
    assert context.response.headers["Content-Type"] == "application/problem+json"
    body = context.response.json()
    assert body["type"] == f"urn:rates-platform:problem:{kind}", body
    assert body["parameter"] == parameter, body
