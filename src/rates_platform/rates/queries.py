"""SQL for the rates capability; parameterised, nothing else builds queries."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

Connection = psycopg.Connection[Any]

# One primary-key range read, at most one row per day, whatever the locations cover.
DAILY_TOTALS = """
    SELECT day, price_count, price_total
    FROM location_daily_totals
    WHERE orig_loc = %(orig)s AND dest_loc = %(dest)s
      AND day BETWEEN %(date_from)s AND %(date_to)s
"""


def known_locations(conn: Connection) -> frozenset[str]:
    """Every port code and region slug."""
    rows = conn.execute("SELECT code FROM ports UNION ALL SELECT slug FROM regions").fetchall()
    return frozenset(code for (code,) in rows)


def daily_totals(
    conn: Connection, orig: str, dest: str, date_from: date, date_to: date
) -> list[tuple[date, int, int]]:
    """(day, number of prices, sum of prices) for each day that has prices."""
    params = {"orig": orig, "dest": dest, "date_from": date_from, "date_to": date_to}
    return conn.execute(DAILY_TOTALS, params).fetchall()
