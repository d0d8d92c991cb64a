"""Reference apps that `make bench` measures beside the service, in the same run.

hello   a bare Flask hello: the framework's own ceiling, under gunicorn gthread 2x2
        and under the server the service uses (granian)
naive   /rates answered the way the original service did: per request, one
        AVG ... GROUP BY day over prices, on one connection per worker
"""

from __future__ import annotations

import os
import threading
from datetime import date, timedelta
from typing import Any

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
