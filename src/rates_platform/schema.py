"""Schema migrations (yoyo) and loading the sample data set from a pg_dump file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
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
    return counts


def has_prices(conninfo: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT EXISTS (SELECT FROM prices)").fetchone() == (True,)
