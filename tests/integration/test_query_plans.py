"""The /rates query reads the totals' primary key, not a table: checked in the plan."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest
from flask import Flask
from psycopg import sql

from rates_platform.db import Database
from rates_platform.rates import queries
from rates_platform.rates.domain import Locations
from tests.support import PreparedDatabase, prepare_database, start_server


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in plan_nodes(child))]


def generic_plan(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> Any:
    """The plan a pooled connection of the API runs: prepared, and generic."""
    numbered = query
    for position, name in enumerate(params, start=1):
        numbered = numbered.replace(f"%({name})s", f"${position}")
    conn.execute(sql.SQL("PREPARE totals AS {}").format(sql.SQL(numbered)))
    values = sql.SQL(", ").join(sql.Literal(value) for value in params.values())
    explain = sql.SQL("EXPLAIN (FORMAT JSON, ANALYZE) EXECUTE totals({})").format(values)
    (raw,) = conn.execute(explain).fetchone()  # type: ignore[misc]
    conn.execute("DEALLOCATE totals")
    return (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]


@pytest.fixture(scope="module", params=["16", "18"])  # 16: Azure's version
def versioned_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PreparedDatabase]:
    server = start_server(tmp_path_factory.mktemp(f"plans{request.param}"), version=request.param)
    try:
        yield prepare_database(server, "rates")  # loaded and analysed, as every load is
    finally:
        server.stop()


def test_the_api_connections_plan_generically(app: Flask) -> None:
    database: Database = app.extensions["database"]
    mode = database.read(lambda conn: conn.execute("SHOW plan_cache_mode").fetchone())
    assert mode == ("force_generic_plan",)


@pytest.mark.parametrize(
    ("origin", "destination", "aggregates"),
    [
        ("CNGGZ", "EETLL", False),
        ("china_main", "northern_europe", False),
        ("CNGGZ", "northern_europe", True),
        ("china_main", "NOOSL", True),
    ],
)
def test_every_shape_is_an_index_scan_of_the_totals_key(
    versioned_db: PreparedDatabase, origin: str, destination: str, aggregates: bool
) -> None:
    first, last = date(2021, 1, 1), date(2021, 1, 31)
    with psycopg.connect(versioned_db.app, autocommit=True) as conn:
        orig, dest = Locations(*queries.locations(conn)).total_keys(origin, destination)
        query, params = queries.daily_totals_statement(orig, dest, first, last)
        conn.execute("SET plan_cache_mode = force_generic_plan")
        plan = generic_plan(conn, query, params)
        assert (query == queries.DAILY_TOTALS) == aggregates
        if not aggregates:  # the single-pair statement answers as the aggregate would
            aggregate = conn.execute(
                queries.DAILY_TOTALS,
                {"orig": orig, "dest": dest, "date_from": first, "date_to": last},
            ).fetchall()
            assert sorted(conn.execute(query, params).fetchall()) == sorted(aggregate)
        # The aggregate's own answers: test_recomputation.py, against the dump file.
    nodes = plan_nodes(plan)
    scans = [n for n in nodes if "Scan" in n["Node Type"]]
    assert "Seq Scan" not in {n["Node Type"] for n in scans}
    index_reads = [n for n in scans if "Index Name" in n]
    assert {n["Index Name"] for n in index_reads} == {"daily_totals_pkey"}
    assert "$1" in index_reads[0]["Index Cond"]  # generic: the same plan for every pair
    # A single key pair's rows are already one per day: no aggregate to pay for.
    assert any(n["Node Type"] == "Aggregate" for n in nodes) is aggregates
    # One row per day and key pair at most: the cost follows days asked for, not data size.
    assert index_reads[0]["Actual Rows"] <= 31 * len(orig) * len(dest)
