"""Steps for rates.feature; expected averages come from the database's raw rows."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
from behave import then, when


@when('I request "{path}"')
def request_path(context: Any, path: str) -> None:
    context.response = context.client.get(path)


@when('I request rates from "{origin}" to "{destination}" from {start} to {end}')
def request_rates(context: Any, origin: str, destination: str, start: str, end: str) -> None:
    context.response = context.client.get(
        f"/rates?date_from={start}&date_to={end}&orig_code={origin}&dest_code={destination}"
    )


@then("the response status is {status:d}")
def response_status(context: Any, status: int) -> None:
    assert context.response.status_code == status, context.response.data


@then('the JSON field "{field}" is "{value}"')
def json_field(context: Any, field: str, value: str) -> None:
    assert context.response.json[field] == value


@then("there are {days:d} days, newest first")
def day_count(context: Any, days: int) -> None:
    listed = [r["day"] for r in context.response.json["rates"]]
    assert len(listed) == days
    assert listed == sorted(listed, reverse=True)


@then("every day has {count:d} prices")
def every_day_count(context: Any, count: int) -> None:
    assert {r["count"] for r in context.response.json["rates"]} == {count}


@then("the average on {day} is {price:g}")
def average_on(context: Any, day: str, price: float) -> None:
    (match,) = [r for r in context.response.json["rates"] if r["day"] == day]
    assert match["price"] == price, match


EXPECTED = """
    WITH RECURSIVE below(slug, root) AS (
        SELECT slug, slug FROM regions WHERE slug IN (%(o)s, %(d)s)
        UNION ALL
        SELECT r.slug, b.root FROM regions r JOIN below b ON r.parent_slug = b.slug),
    members(code, loc) AS (
        SELECT p.code, b.root FROM ports p JOIN below b ON p.parent_slug = b.slug
        UNION SELECT code, code FROM ports WHERE code IN (%(o)s, %(d)s))
    SELECT day::text, count(*), sum(price)
    FROM prices
    WHERE orig_code IN (SELECT code FROM members WHERE loc = %(o)s)
      AND dest_code IN (SELECT code FROM members WHERE loc = %(d)s)
      AND day BETWEEN '2021-01-01' AND '2021-01-31'
    GROUP BY day
"""


@then('the averages match the prices stored for every port below "{origin}" and "{destination}"')
def averages_match(context: Any, origin: str, destination: str) -> None:
    with psycopg.connect(context.admin) as conn:
        rows = conn.execute(EXPECTED, {"o": origin, "d": destination}).fetchall()
    expected = {
        day: (n, (Decimal(total) / n).quantize(Decimal("0.01"), ROUND_HALF_UP) if n >= 3 else None)
        for day, n, total in rows
    }
    for rate in context.response.json["rates"]:
        count, price = expected.get(rate["day"], (0, None))
        assert rate["count"] == count, (rate, count)
        assert rate["price"] == (None if price is None else float(price)), (rate, price)


@then('the response is a problem of type "{kind}" about "{parameter}"')
def problem_of_type(context: Any, kind: str, parameter: str) -> None:
    assert context.response.mimetype == "application/problem+json"
    body = context.response.json
    assert body["type"] == f"urn:rates-platform:problem:{kind}", body
    assert body["parameter"] == parameter, body
