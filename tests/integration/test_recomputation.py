"""Every /rates answer equals a recomputation from the dump file itself.

The expected values are computed here from db/rates.sql with nothing from the
application: its own dump reader, its own tree walk, exact fractions.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from fractions import Fraction
from functools import cache
from pathlib import Path

import pytest
from flask.testing import FlaskClient

DUMP = Path(__file__).resolve().parents[2] / "db" / "rates.sql"
FIRST, LAST = date(2020, 12, 30), date(2021, 2, 1)  # one day of margin each side


@cache
def dump_rows() -> dict[str, list[list[str]]]:
    rows: dict[str, list[list[str]]] = {}
    current = None
    for line in DUMP.read_text(encoding="utf-8").splitlines():
        if current is None and line.startswith("COPY public."):
            current = line.split()[1].removeprefix("public.")
            rows[current] = []
        elif line == "\\.":
            current = None
        elif current is not None:
            rows[current].append(line.split("\t"))
    return rows


def ports_under(location: str) -> set[str]:
    rows = dump_rows()
    ports = {code: parent for code, _name, parent in rows["ports"]}
    if location in ports:
        return {location}
    regions = {location}
    changed = True
    while changed:
        below = {slug for slug, _name, parent in rows["regions"] if parent in regions}
        changed = not below <= regions
        regions |= below
    return {code for code, parent in ports.items() if parent in regions}


@cache
def prices_by_lane() -> dict[tuple[str, str], list[tuple[date, int]]]:
    lanes: dict[tuple[str, str], list[tuple[date, int]]] = defaultdict(list)
    for orig, dest, day, price in dump_rows()["prices"]:
        lanes[orig, dest].append((date.fromisoformat(day), int(price)))
    return lanes


def expected(origin: str, destination: str) -> list[tuple[str, Fraction | None, int]]:
    per_day: dict[date, list[int]] = defaultdict(list)
    for orig in ports_under(origin):
        for dest in ports_under(destination):
            for day, price in prices_by_lane().get((orig, dest), ()):
                per_day[day].append(price)
    result = []
    day = LAST
    while day >= FIRST:
        prices = per_day.get(day, [])
        mean = Fraction(sum(prices), len(prices)) if len(prices) >= 3 else None
        result.append((day.isoformat(), mean, len(prices)))
        day -= timedelta(days=1)
    return result


def check(client: FlaskClient, origin: str, destination: str) -> None:
    response = client.get(
        f"/rates?date_from={FIRST}&date_to={LAST}&orig_code={origin}&dest_code={destination}"
    )
    assert response.status_code == 200, response.json
    actual = response.json["rates"]
    want = expected(origin, destination)
    assert [(r["day"], r["count"]) for r in actual] == [(d, n) for d, _, n in want]
    for row, (_, mean, _) in zip(actual, want, strict=True):
        if mean is None:
            assert row["price"] is None, row
        else:  # the exact mean, as a JSON number: within 1e-9 of the recomputed fraction
            assert isinstance(row["price"], float), row
            assert abs(Fraction(row["price"]) - mean) <= Fraction(1, 10**9), row


def all_regions() -> list[str]:
    return sorted(slug for slug, _name, _parent in dump_rows()["regions"])


def test_the_sample_tree_has_several_levels() -> None:
    depth = {slug: parent for slug, _name, parent in dump_rows()["regions"]}

    def level(slug: str) -> int:
        return 1 if depth[slug] == "\\N" else 1 + level(depth[slug])

    assert max(level(slug) for slug in depth) >= 3


@pytest.mark.parametrize("origin", all_regions())
def test_every_region_pair(client: FlaskClient, origin: str) -> None:
    for destination in all_regions():
        check(client, origin, destination)


def test_busiest_port_lanes_and_mixed_shapes(client: FlaskClient) -> None:
    busiest = sorted(prices_by_lane(), key=lambda lane: -len(prices_by_lane()[lane]))[:15]
    for orig, dest in busiest:
        check(client, orig, dest)
        check(client, orig, "northern_europe")
        check(client, "china_main", dest)


def test_a_lane_without_prices(client: FlaskClient) -> None:
    check(client, "EETLL", "CNGGZ")
