"""The /rates query reads the totals' primary key, not a table: checked in the plan."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import psycopg
import pytest

from rates_platform.rates import queries
from rates_platform.rates.domain import Locations
from tests.support import PreparedDatabase


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in plan_nodes(child))]


@pytest.mark.parametrize(
    ("origin", "destination"),
    [
        ("CNGGZ", "EETLL"),
        ("china_main", "northern_europe"),
        ("CNGGZ", "northern_europe"),
        ("china_main", "NOOSL"),
    ],
)
def test_every_shape_is_an_index_scan_of_the_totals_key(
    sample_db: PreparedDatabase, origin: str, destination: str
) -> None:
    with psycopg.connect(sample_db.app) as conn:
        orig, dest = Locations(*queries.locations(conn)).total_keys(origin, destination)
        params = {
            "orig": orig,
            "dest": dest,
            "date_from": date(2021, 1, 1),
            "date_to": date(2021, 1, 31),
        }
        (raw,) = conn.execute(
            "EXPLAIN (FORMAT JSON, ANALYZE) " + queries.DAILY_TOTALS, params
        ).fetchone()
    plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
    scans = [n for n in plan_nodes(plan) if "Scan" in n["Node Type"]]
    assert "Seq Scan" not in {n["Node Type"] for n in scans}
    index_reads = [n for n in scans if "Index Name" in n]
    assert {n["Index Name"] for n in index_reads} == {"daily_totals_pkey"}
    # One row per day and key pair at most: the cost follows days asked for, not data size.
    assert index_reads[0]["Actual Rows"] <= 31 * len(orig) * len(dest)
