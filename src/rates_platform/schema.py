"""Schema migrations (yoyo) and loading the sample data set from a pg_dump file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg import sql
from yoyo import get_backend, read_migrations

# Loaded parents first, so foreign keys hold at every step.
SAMPLE_TABLES = ("regions", "ports", "prices")
_COPY_HEADER = re.compile(r"COPY public\.(\w+) \(([\w, ]+)\) FROM stdin;")


def _yoyo_uri(conninfo: str) -> str:
    """A yoyo URI carrying exactly the parameters libpq resolved for ``conninfo``.

    Resolving through a real connection honours DATABASE_URL and PG* variables alike.
    """
    with psycopg.connect(conninfo) as conn:
        params = dict(conn.info.get_parameters())
        if conn.info.password:
            params["password"] = conn.info.password
    return "postgresql+psycopg:///?" + urlencode(params)


def migrate(conninfo: str) -> list[str]:
    """Apply pending migrations under yoyo's lock; return the ids applied."""
    migrations_dir = resources.files("rates_platform").joinpath("migrations")
    migrations = read_migrations(str(migrations_dir))
    backend = get_backend(_yoyo_uri(conninfo))
    try:
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    finally:
        backend.connection.close()
    return [m.id for m in pending]


@dataclass
class DumpTable:
    name: str
    columns: list[str]
    rows: list[str] = field(default_factory=list)


def read_dump(path: Path) -> dict[str, DumpTable]:
    """The COPY sections of a plain-format pg_dump, for the sample tables only."""
    tables: dict[str, DumpTable] = {}
    lines: Iterator[str] = iter(path.read_text(encoding="utf-8").splitlines(keepends=True))
    for line in lines:
        header = _COPY_HEADER.fullmatch(line.rstrip("\n"))
        if header is None or header.group(1) not in SAMPLE_TABLES:
            continue
        table = DumpTable(header.group(1), [c.strip() for c in header.group(2).split(",")])
        for row in lines:
            if row.rstrip("\n") == "\\.":
                break
            table.rows.append(row)
        tables[table.name] = table
    missing = set(SAMPLE_TABLES) - tables.keys()
    if missing:
        raise ValueError(f"{path} has no data for: {', '.join(sorted(missing))}")
    return tables


# Each port stands for itself and for every region above it (UNION: cycle-safe).
_REBUILD_TOTALS = (
    """CREATE TEMPORARY TABLE location_of ON COMMIT DROP AS
       WITH RECURSIVE up(code, loc) AS (
           SELECT code, code FROM ports
           UNION SELECT code, parent_slug FROM ports
           UNION SELECT up.code, r.parent_slug
                 FROM up JOIN regions r ON r.slug = up.loc
                 WHERE r.parent_slug IS NOT NULL)
       SELECT code, loc FROM up""",
    """CREATE TEMPORARY TABLE lane_days ON COMMIT DROP AS
       SELECT orig_code, dest_code, day, count(*) AS n, sum(price) AS total
       FROM prices GROUP BY orig_code, dest_code, day""",
    """CREATE TEMPORARY TABLE origin_days ON COMMIT DROP AS
       SELECT o.loc AS orig_loc, l.dest_code, l.day, sum(l.n) AS n, sum(l.total) AS total
       FROM lane_days l JOIN location_of o ON o.code = l.orig_code
       GROUP BY o.loc, l.dest_code, l.day""",
    "TRUNCATE location_daily_totals",
    """INSERT INTO location_daily_totals (orig_loc, dest_loc, day, price_count, price_total)
       SELECT od.orig_loc, d.loc, od.day, sum(od.n), sum(od.total)
       FROM origin_days od JOIN location_of d ON d.code = od.dest_code
       GROUP BY od.orig_loc, d.loc, od.day""",
    "ANALYZE location_daily_totals",
)


def rebuild_daily_totals(conn: psycopg.Connection[Any]) -> None:
    """Recompute location_daily_totals from prices; call inside the loading transaction."""
    for statement in _REBUILD_TOTALS:
        conn.execute(statement)


def load_sample(conninfo: str, path: Path) -> dict[str, int]:
    """Replace ports, regions and prices with the dump's rows, atomically.

    Running it twice leaves the same data: that is what makes it safe to rerun.
    """
    tables = read_dump(path)
    counts: dict[str, int] = {}
    with psycopg.connect(conninfo) as conn, conn.transaction():
        conn.execute(
            sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(sql.Identifier(name) for name in SAMPLE_TABLES)
            )
        )
        for name in SAMPLE_TABLES:
            table = tables[name]
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, table.columns))
            )
            with conn.cursor().copy(statement) as copy:
                copy.write("".join(table.rows))
            counts[name] = len(table.rows)
        for name in SAMPLE_TABLES:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
        rebuild_daily_totals(conn)
    return counts


def has_prices(conninfo: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT EXISTS (SELECT FROM prices)").fetchone() == (True,)
