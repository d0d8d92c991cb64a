"""Reference apps that `make bench` measures beside the service, in the same run.

hello   a bare Flask hello: the framework's own ceiling, under gunicorn gthread 2x2
        and under the server the service uses (granian)
naive   /rates answered the way the original service did: per request, one
        AVG ... GROUP BY day over prices, on one connection per worker
bare    our RatesService (same pool, queries and domain) behind a raw WSGI callable:
        no Flask, no request id, metrics or log line; what the HTTP layer costs
"""

from __future__ import annotations

import os
import threading
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl

import orjson
import psycopg
from flask import Flask, request

hello = Flask("hello")


@hello.get("/")
def say_hello() -> dict[str, str]:
    return {"message": "Hello world!"}


naive = Flask("naive")
_connection: psycopg.Connection[Any] | None = None
_connection_lock = threading.Lock()

# Every port at or below each location, then the average of the matching prices.
_NAIVE_RATES = """
    WITH RECURSIVE below(slug, root) AS (
        SELECT slug, slug FROM regions WHERE slug IN (%(orig)s, %(dest)s)
        UNION ALL
        SELECT r.slug, b.root FROM regions r JOIN below b ON r.parent_slug = b.slug),
    members(code, loc) AS (
        SELECT p.code, b.root FROM ports p JOIN below b ON p.parent_slug = b.slug
        UNION SELECT code, code FROM ports WHERE code IN (%(orig)s, %(dest)s))
    SELECT day, AVG(price), COUNT(*)
    FROM prices
    WHERE orig_code IN (SELECT code FROM members WHERE loc = %(orig)s)
      AND dest_code IN (SELECT code FROM members WHERE loc = %(dest)s)
      AND day BETWEEN %(date_from)s AND %(date_to)s
    GROUP BY day
"""


@naive.get("/rates")
def naive_rates() -> dict[str, Any]:
    global _connection  # noqa: PLW0603 - one connection per worker, as the original had
    args = request.args
    params = {
        "orig": args["orig_code"],
        "dest": args["dest_code"],
        "date_from": date.fromisoformat(args["date_from"]),
        "date_to": date.fromisoformat(args["date_to"]),
    }
    with _connection_lock:
        if _connection is None:
            _connection = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
        rows = _connection.execute(_NAIVE_RATES, params).fetchall()
    by_day = {day: (float(avg), count) for day, avg, count in rows}
    days = (params["date_to"] - params["date_from"]).days + 1
    rates = []
    for offset in range(days):
        day = params["date_to"] - timedelta(days=offset)
        average, count = by_day.get(day, (None, 0))
        rates.append(
            {"day": day.isoformat(), "price": average if count >= 3 else None, "count": count}
        )
    return {"rates": rates}


_bare_service: Any = None
_bare_lock = threading.Lock()


def bare(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """GET /rates through our service alone: parsing, locations, the pooled query and
    the day series, serialised with orjson; anything else is the client's problem."""
    global _bare_service  # noqa: PLW0603 - built once per worker, on first use
    with _bare_lock:
        if _bare_service is None:
            _bare_service = _service()
    series = _bare_service.daily_rates(dict(parse_qsl(environ.get("QUERY_STRING", ""))))
    body = orjson.dumps(
        {"rates": [{"day": r.day.isoformat(), "price": r.price, "count": r.count} for r in series]}
    )
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def _service() -> Any:
    from rates_platform.db import Database, Outage, make_pool  # noqa: PLC0415
    from rates_platform.rates.service import RatesService  # noqa: PLC0415
    from rates_platform.settings import Settings  # noqa: PLC0415

    settings = Settings.from_env()
    outage = Outage()
    pool = make_pool(settings, outage=outage)
    pool.open(wait=True)
    database = Database(pool, outage, settings.pool_timeout, settings.statement_timeout)
    return RatesService(database, settings.max_range_days)
