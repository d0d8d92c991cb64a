"""The audit trail: append-only for the application, and any edit is detected."""

from __future__ import annotations

import json

import psycopg
import pytest

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event
from tests.support import PreparedDatabase


def append(conninfo: str, count: int = 3) -> None:
    with psycopg.connect(conninfo) as conn:
        for index in range(count):
            audit.record(conn, Event.API_START, f"role_{index}", details={"n": index})


def test_the_chain_verifies_and_tails_as_json(fresh_db: PreparedDatabase) -> None:
    append(fresh_db.app)
    with psycopg.connect(fresh_db.admin) as conn:
        result = audit.verify(conn)
        assert (result.intact, result.rows >= 3) == (True, True)
        lines = [json.loads(line) for line in audit.tail(conn)]
    tail = lines[-3:]
    assert [e["target"] for e in tail] == ["role_0", "role_1", "role_2"]
    assert {e["actor"] for e in tail} == {"rates_test_api"}  # who: the session's login
    assert all(e["event"] == "api.start" and e["outcome"] == "success" for e in tail)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.events SET target = 'forged'",
        "DELETE FROM audit.events",
        "TRUNCATE audit.events",
        "UPDATE audit.chain_head SET last_id = 0",
    ],
)
def test_the_application_can_only_append(fresh_db: PreparedDatabase, statement: str) -> None:
    append(fresh_db.app, 1)
    with psycopg.connect(fresh_db.app) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_triggers_refuse_edits_even_by_the_owner(fresh_db: PreparedDatabase) -> None:
    append(fresh_db.app, 1)
    with psycopg.connect(fresh_db.admin) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("UPDATE audit.events SET target = 'forged'")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("DELETE FROM audit.events")


def test_unknown_event_types_are_refused(fresh_db: PreparedDatabase) -> None:
    # No role is bound to it, so not even a superuser may write it.
    with (
        psycopg.connect(fresh_db.admin) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not write made.up"),
    ):
        conn.execute(
            "INSERT INTO audit.events (event_type, target, outcome) "
            "VALUES ('made.up', 'x', 'success')"
        )


def tamper(conninfo: str, statement: str) -> None:
    """What only a superuser can do: bypass the triggers and rewrite history."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(statement)


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("UPDATE audit.events SET target = 'forged' WHERE target = 'role_1'", "content"),
        ("UPDATE audit.events SET details = '{\"n\": 9}' WHERE target = 'role_1'", "content"),
        ("DELETE FROM audit.events WHERE target = 'role_1'", "follow"),
        ("DELETE FROM audit.events WHERE target = 'role_2'", "removed"),
    ],
)
def test_superuser_edits_are_reported_at_the_first_broken_row(
    fresh_db: PreparedDatabase, statement: str, reason: str
) -> None:
    append(fresh_db.app)
    with psycopg.connect(fresh_db.admin) as conn:
        ids = dict(conn.execute("SELECT target, id FROM audit.events").fetchall())
    tamper(fresh_db.admin, statement)
    with psycopg.connect(fresh_db.admin) as conn:
        result = audit.verify(conn)
    assert not result.intact
    assert reason in (result.reason or "")
    expected = {"content": ids["role_1"], "follow": ids["role_2"], "removed": ids["role_1"]}
    assert result.first_broken_id == expected[reason]


def test_no_secret_column_exists(sample_db: PreparedDatabase) -> None:
    with psycopg.connect(sample_db.admin) as conn:
        columns = {
            c
            for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'audit'"
            )
        }
    assert not {c for c in columns if "pass" in c or "secret" in c}
