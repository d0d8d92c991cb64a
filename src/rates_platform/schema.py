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

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event

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


# A non-superuser administrator (Azure's: NOSUPERUSER CREATEROLE CREATEDB) needs
# membership in rates_owner to hand it objects (ALTER ... OWNER needs SET) and to change
# the objects it owns in later migrations (INHERIT). Having created rates_owner, it holds
# ADMIN on it (PostgreSQL 16+), so it can grant itself that membership.
_ACT_AS_OWNER = """
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rates_owner')
       AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT (pg_has_role(current_user, 'rates_owner', 'SET')
                AND pg_has_role(current_user, 'rates_owner', 'USAGE')) THEN
        GRANT rates_owner TO CURRENT_USER WITH INHERIT TRUE, SET TRUE;
    END IF;
END
$$
"""

# Migrations run as the migrating login; afterwards every object of the service is
# handed to the NOLOGIN owner role, so no login role owns anything (yoyo's own
# bookkeeping tables excepted).
_OWN_EVERYTHING = """
DO $$
DECLARE
    item record;
BEGIN
    -- The schema first: a new owner needs CREATE on the schema of what it gets.
    IF EXISTS (SELECT FROM pg_namespace
               WHERE nspname = 'audit' AND nspowner <> 'rates_owner'::regrole) THEN
        ALTER SCHEMA audit OWNER TO rates_owner;
    END IF;
    FOR item IN
        SELECT format('ALTER %s %s OWNER TO rates_owner',
                      CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                      c.oid::regclass) AS statement
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'audit') AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
          AND c.relname NOT LIKE '%yoyo%'
          AND c.relowner <> 'rates_owner'::regrole
          AND NOT (c.relkind = 'S' AND EXISTS (  -- owned sequences follow their table
              SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
        UNION ALL
        SELECT format('ALTER FUNCTION %s OWNER TO rates_owner', p.oid::regprocedure)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'audit' AND p.proowner <> 'rates_owner'::regrole
    LOOP
        EXECUTE item.statement;
    END LOOP;
END
$$
"""


def migrate(conninfo: str) -> list[str]:
    """Apply pending migrations under yoyo's lock; return the ids applied."""
    migrations_dir = resources.files("rates_platform").joinpath("migrations")
    migrations = read_migrations(str(migrations_dir))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(_ACT_AS_OWNER)  # for what earlier runs handed to rates_owner
    backend = get_backend(_yoyo_uri(conninfo))
    try:
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    finally:
        backend.connection.close()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(_ACT_AS_OWNER)  # rates_owner may be new
        conn.execute(_OWN_EVERYTHING)
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
    # Every region with itself and each region above it (UNION: safe even on a cycle).
    """CREATE TEMPORARY TABLE region_up ON COMMIT DROP AS
       WITH RECURSIVE up(slug, ancestor) AS (
           SELECT slug, slug FROM regions
           UNION SELECT up.slug, r.parent_slug
                 FROM up JOIN regions r ON r.slug = up.ancestor
                 WHERE r.parent_slug IS NOT NULL)
       SELECT slug, ancestor FROM up""",
    """CREATE TEMPORARY TABLE lane_days ON COMMIT DROP AS
       SELECT p.orig_code, o.parent_slug AS orig_region, p.dest_code,
              d.parent_slug AS dest_region, p.day, count(*) AS n, sum(p.price) AS total
       FROM prices p
       JOIN ports o ON o.code = p.orig_code
       JOIN ports d ON d.code = p.dest_code
       GROUP BY p.orig_code, o.parent_slug, p.dest_code, d.parent_slug, p.day""",
    # Bulk insert first, index after: far faster than maintaining the key row by row.
    "ALTER TABLE daily_totals DROP CONSTRAINT daily_totals_pkey",
    "TRUNCATE daily_totals",
    """INSERT INTO daily_totals
       SELECT orig_code, dest_code, day, n, total FROM lane_days""",
    """INSERT INTO daily_totals
       SELECT orig_code, dest_region, day, sum(n), sum(total)
       FROM lane_days GROUP BY orig_code, dest_region, day""",
    """INSERT INTO daily_totals
       SELECT orig_region, dest_code, day, sum(n), sum(total)
       FROM lane_days GROUP BY orig_region, dest_code, day""",
    """CREATE TEMPORARY TABLE origin_up_days ON COMMIT DROP AS
       SELECT u.ancestor AS orig_key, l.dest_region, l.day, sum(l.n) AS n,
              sum(l.total) AS total
       FROM lane_days l JOIN region_up u ON u.slug = l.orig_region
       GROUP BY u.ancestor, l.dest_region, l.day""",
    """INSERT INTO daily_totals
       SELECT o.orig_key, u.ancestor, o.day, sum(o.n), sum(o.total)
       FROM origin_up_days o JOIN region_up u ON u.slug = o.dest_region
       GROUP BY o.orig_key, u.ancestor, o.day""",
    """ALTER TABLE daily_totals
       ADD CONSTRAINT daily_totals_pkey PRIMARY KEY (orig_key, dest_key, day)
       INCLUDE (price_count, price_total)""",
)
_KEY_CLASH = "SELECT code FROM ports JOIN regions ON regions.slug = ports.code LIMIT 1"


def rebuild_daily_totals(conn: psycopg.Connection[Any]) -> None:
    """Recompute daily_totals from prices; call inside the loading transaction."""
    clash = conn.execute(_KEY_CLASH).fetchone()
    if clash is not None:
        raise ValueError(f"{clash[0]!r} is both a port code and a region slug")
    for statement in _REBUILD_TOTALS:
        conn.execute(statement)


def vacuum_daily_totals(conninfo: str) -> None:
    """Mark the rebuilt totals all-visible (and analyse them), so reads are index-only.

    VACUUM cannot run inside the loading transaction, so loaders call this after it.
    """
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) daily_totals")


def truncate_sample_tables(conn: psycopg.Connection[Any]) -> None:
    names = sql.SQL(", ").join(sql.Identifier(name) for name in SAMPLE_TABLES)
    conn.execute(sql.SQL("TRUNCATE {}").format(names))


def load_sample(conninfo: str, path: Path) -> dict[str, int]:
    """Replace ports, regions and prices with the dump's rows, atomically.

    Running it twice leaves the same data: that is what makes it safe to rerun.
    """
    tables = read_dump(path)
    counts: dict[str, int] = {}
    with psycopg.connect(conninfo) as conn, conn.transaction():
        truncate_sample_tables(conn)
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
        audit.record(conn, Event.DATA_LOAD, "rates", details={"source": path.name, **counts})
    vacuum_daily_totals(conninfo)
    return counts


def has_prices(conninfo: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT EXISTS (SELECT FROM prices)").fetchone() == (True,)
