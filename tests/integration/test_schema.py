"""Migrations and the sample loader: repeatable, complete, and least-privileged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
import pytest

from rates_platform import schema
from tests.support import SAMPLE, PreparedDatabase


def fingerprint(conninfo: str) -> dict[str, str]:
    with psycopg.connect(conninfo) as conn:
        result = {}
        for table, order in (
            ("regions", "slug"),
            ("ports", "code"),
            ("prices", "orig_code, dest_code, day, price"),
        ):
            rows = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            result[table] = hashlib.sha256(repr(rows).encode()).hexdigest()
        return result


def test_migrations_are_applied_once(fresh_db: PreparedDatabase) -> None:
    assert schema.migrate(fresh_db.admin) == []


def test_loading_twice_gives_the_same_data(fresh_db: PreparedDatabase) -> None:
    before = fingerprint(fresh_db.admin)
    assert schema.load_sample(fresh_db.admin, SAMPLE) == {
        "regions": 20,
        "ports": 143,
        "prices": 56689,
    }
    assert fingerprint(fresh_db.admin) == before


def test_a_failed_load_changes_nothing(fresh_db: PreparedDatabase, tmp_path: Path) -> None:
    before = fingerprint(fresh_db.admin)
    broken = tmp_path / "broken.sql"
    # A price for a port that does not exist violates a foreign key half-way through.
    broken.write_text(
        SAMPLE.read_text(encoding="utf-8").replace("\nCNGGZ\tEETLL\t", "\nXXXXX\tEETLL\t", 1),
        encoding="utf-8",
    )
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        schema.load_sample(fresh_db.admin, broken)
    assert fingerprint(fresh_db.admin) == before


def test_a_dump_without_the_tables_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sql"
    empty.write_text("-- nothing here\n")
    with pytest.raises(ValueError, match="no data for: ports, prices, regions"):
        schema.read_dump(empty)


def test_the_api_login_can_only_read(sample_db: PreparedDatabase) -> None:
    with psycopg.connect(sample_db.app, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM prices").fetchone() == (56689,)
        for statement in (
            "DELETE FROM prices",
            "INSERT INTO regions VALUES ('x', 'x', NULL)",
            "CREATE TABLE mine (id int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
