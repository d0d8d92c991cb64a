"""The /rates query reads its primary key, not the table: checked in the plan itself."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import psycopg
import pytest

from rates_platform.rates.queries import DAILY_TOTALS
from tests.support import PreparedDatabase


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in plan_nodes(child))]


@pytest.mark.parametrize(
    ("orig", "dest"),
    [
        ("CNGGZ", "EETLL"),
        ("china_main", "northern_europe"),
        ("CNSHA", "baltic"),
        ("china_east_main", "NOOSL"),
    ],
)
def test_rates_query_uses_the_totals_primary_key(
    sample_db: PreparedDatabase, orig: str, dest: str
) -> None:
    params = {
        "orig": orig,
        "dest": dest,
        "date_from": date(2021, 1, 1),
        "date_to": date(2021, 1, 31),
    }
    with psycopg.connect(sample_db.app) as conn:
        (raw,) = conn.execute("EXPLAIN (FORMAT JSON, ANALYZE) " + DAILY_TOTALS, params).fetchone()
    plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
    scans = [n for n in plan_nodes(plan) if "Scan" in n["Node Type"]]
    assert [(n["Node Type"], n.get("Index Name")) for n in scans] == [
        ("Index Scan", "location_daily_totals_pkey")
    ]
    assert scans[0]["Actual Rows"] <= 31  # one row per day at most, whatever the regions
