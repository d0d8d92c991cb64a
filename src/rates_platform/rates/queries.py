"""SQL for the rates capability; parameterised, nothing else builds queries."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

Connection = psycopg.Connection[Any]

# At most one primary-key range per key pair, whatever the regions cover.
DAILY_TOTALS = """
    SELECT day, sum(price_count)::int, sum(price_total)::bigint
    FROM daily_totals
    WHERE orig_key = ANY(%(orig)s) AND dest_key = ANY(%(dest)s)
      AND day BETWEEN %(date_from)s AND %(date_to)s
    GROUP BY day
"""
# One key pair (a lane, or two regions): its rows are already one per day, and
# skipping the aggregate halves the query's server time.
ONE_PAIR_DAILY_TOTALS = """
    SELECT day, price_count, price_total
    FROM daily_totals
    WHERE orig_key = %(orig)s AND dest_key = %(dest)s
      AND day BETWEEN %(date_from)s AND %(date_to)s
"""


def locations(conn: Connection) -> tuple[dict[str, str], dict[str, str | None]]:
    """All ports (code -> region) and regions (slug -> parent)."""
    ports = dict(conn.execute("SELECT code, parent_slug FROM ports").fetchall())
    regions = dict(conn.execute("SELECT slug, parent_slug FROM regions").fetchall())
    return ports, regions


def daily_totals_statement(
    orig: list[str], dest: list[str], date_from: date, date_to: date
) -> tuple[str, dict[str, Any]]:
    """The query (and its parameters) whose rows are (day, number of prices, sum of
    prices) for each day that has prices, for these keys and dates."""
    dates = {"date_from": date_from, "date_to": date_to}
    if len(orig) == len(dest) == 1:
        return ONE_PAIR_DAILY_TOTALS, {"orig": orig[0], "dest": dest[0], **dates}
    return DAILY_TOTALS, {"orig": orig, "dest": dest, **dates}
