"""A realistic synthetic data set of any size, loaded through COPY, for benchmarks.

Shape: a region tree at least four levels deep, ports spread over it, and lanes whose
popularity follows a Zipf law (a few hub lanes carry most prices, a long tail few).
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import psycopg

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event
from rates_platform.schema import rebuild_daily_totals, truncate_sample_tables

CHUNK_ROWS = 200_000
DROP_PRICE_FKEYS = """ALTER TABLE prices DROP CONSTRAINT prices_orig_code_fkey,
                                        DROP CONSTRAINT prices_dest_code_fkey"""
ADD_PRICE_FKEYS = """ALTER TABLE prices
    ADD CONSTRAINT prices_orig_code_fkey FOREIGN KEY (orig_code) REFERENCES ports (code),
    ADD CONSTRAINT prices_dest_code_fkey FOREIGN KEY (dest_code) REFERENCES ports (code)"""
COPY_PRICES = "COPY prices (orig_code, dest_code, day, price) FROM STDIN"
# Children per region at each level below the roots: 5 → 15 → 30 → 60 regions, 4 levels.
TREE_FANOUT = (3, 2, 2)


@dataclass(frozen=True)
class Shape:
    prices: int = 10_000_000
    days: int = 365
    ports: int = 2_000
    regions: int = 100
    lanes: int = 20_000
    first_day: date = date(2021, 1, 1)
    seed: int = 1


def region_tree(count: int, rng: random.Random) -> list[tuple[str, str | None]]:
    """(slug, parent) pairs: roots first, each level under the one above, >= 4 levels."""
    roots = max(1, count // 20)
    levels: list[list[str]] = [[f"area_{i}" for i in range(roots)]]
    tree: list[tuple[str, str | None]] = [(slug, None) for slug in levels[0]]
    for depth, fanout in enumerate(TREE_FANOUT, start=2):
        level = [f"{parent}_{depth}{i}" for parent in levels[-1] for i in range(fanout)]
        levels.append(level)
        tree.extend((slug, slug.rsplit("_", 1)[0]) for slug in level)
    while len(tree) < count:  # the rest hang under random lower regions, deepening the tree
        parent = rng.choice(levels[-1] + levels[-2])
        slug = f"{parent}_x{len(tree)}"
        tree.append((slug, parent))
        levels[-1].append(slug)
    return tree[:count] if len(tree) > count else tree


def _zipf_cumulative(count: int, exponent: float = 1.1) -> list[float]:
    return list(itertools.accumulate(1 / (rank**exponent) for rank in range(1, count + 1)))


def generate(
    conn: psycopg.Connection[Any],
    shape: Shape,
    progress: Callable[[int], None] = lambda _rows: None,
) -> dict[str, float]:
    """Replace all data with a synthetic set; return counts and the COPY rate."""
    # Reproducible synthetic data, not secrets.
    rng = random.Random(shape.seed)  # noqa: S311  # nosec B311
    regions = region_tree(shape.regions, rng)
    parents_with_ports = [slug for slug, parent in regions if parent is not None]
    ports = [(f"P{i:05d}", f"Port {i}", rng.choice(parents_with_ports)) for i in range(shape.ports)]
    hubs = _zipf_cumulative(shape.ports)
    lane_set: set[tuple[int, int]] = set()
    while len(lane_set) < shape.lanes:
        orig, dest = rng.choices(range(shape.ports), cum_weights=hubs, k=2)
        if orig != dest:
            lane_set.add((orig, dest))
    lanes = sorted(lane_set)
    rng.shuffle(lanes)  # popularity rank independent of port numbering
    prefixes = [f"{ports[o][0]}\t{ports[d][0]}\t" for o, d in lanes]
    base = [rng.randint(300, 4_000) for _ in lanes]
    lane_weights = _zipf_cumulative(len(lanes))
    days = [(shape.first_day + timedelta(days=i)).isoformat() for i in range(shape.days)]

    with conn.transaction():
        truncate_sample_tables(conn)
        with conn.cursor().copy("COPY regions (slug, name, parent_slug) FROM STDIN") as copy:
            for slug, parent in regions:
                copy.write_row((slug, slug.replace("_", " ").title(), parent))
        with conn.cursor().copy("COPY ports (code, name, parent_slug) FROM STDIN") as copy:
            for port in ports:
                copy.write_row(port)
        # Checking two foreign keys per row would cost most of the load; one join after
        # the COPY validates them all (the transaction fails if any price is orphaned).
        conn.execute(DROP_PRICE_FKEYS)
        started, written = time.perf_counter(), 0
        with conn.cursor().copy(
            "COPY prices (orig_code, dest_code, day, price) FROM STDIN"
        ) as copy:
            while written < shape.prices:
                n = min(CHUNK_ROWS, shape.prices - written)
                picks = rng.choices(range(len(lanes)), cum_weights=lane_weights, k=n)
                when = rng.choices(days, k=n)
                noise = rng.random
                copy.write(
                    "".join(
                        [
                            f"{prefixes[lane]}{day}\t{int(base[lane] * (0.85 + 0.3 * noise()))}\n"
                            for lane, day in zip(picks, when, strict=True)
                        ]
                    )
                )
                written += n
                progress(n)
        copy_seconds = time.perf_counter() - started
        conn.execute(ADD_PRICE_FKEYS)
        conn.execute("ANALYZE prices")
        totals_started = time.perf_counter()
        rebuild_daily_totals(conn)
        totals_seconds = time.perf_counter() - totals_started
        audit.record(
            conn,
            Event.DATA_LOAD,
            "rates",
            details={"source": "synthetic", "prices": written, "seed": shape.seed},
        )
    return {
        "regions": len(regions),
        "ports": len(ports),
        "lanes": len(lanes),
        "prices": written,
        "copy_rows_per_second": round(written / copy_seconds),
        "totals_rebuild_seconds": round(totals_seconds, 1),
    }
