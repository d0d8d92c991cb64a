"""The audit trail: append-only for the application, and any edit is detected."""

from __future__ import annotations

import json
from importlib import resources

import psycopg
import pytest
from yoyo import get_backend, read_migrations

from rates_platform import schema
from rates_platform.dbaccess import audit, chain
from rates_platform.dbaccess.audit import Event
from rates_platform.dbaccess.roles import ensure_login_member
from rates_platform.devdb import EmbeddedPostgres
from tests.support import (
    TEST_LOGIN_PASSWORD,
    TEST_LOGIN_ROLE,
    PreparedDatabase,
    create_database,
)


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
        pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"may not write made\.up"),
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
        ids: dict[str, int] = dict(conn.execute("SELECT target, id FROM audit.events").fetchall())
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


# -- the hash format ---------------------------------------------------------------------

WEIRD: list[tuple[str, dict[str, object]]] = [
    ("t|api.stop|x", {"n": 1}),
    ('ünï|cödé\n\t"quoted"', {"b": [1, 2.50, None, True], "a": "é|,"}),
    ("", {}),
]


def test_sql_and_python_hash_stored_rows_alike(fresh_db: PreparedDatabase) -> None:
    with psycopg.connect(fresh_db.app) as conn:
        for target, details in WEIRD:
            audit.record(conn, Event.API_START, target, details=details)
    with psycopg.connect(fresh_db.admin) as conn:
        rows = conn.execute(
            "SELECT id, at, actor, event_type, target, outcome, details::text, prev_hash, hash,"
            " audit.row_hash(prev_hash, e) FROM audit.events e ORDER BY id DESC LIMIT 3"
        ).fetchall()
        assert audit.verify(conn).intact
    for *fields, in_sql in rows:
        row = chain.Row(*fields)
        assert chain.hash_v2(row.prev_hash, row) == row.hash == in_sql


def test_rows_that_hashed_alike_under_the_pipe_format_do_not_now(
    fresh_db: PreparedDatabase,
) -> None:
    # The same id, time and previous hash; a role name with pipes shifts the fields.
    one = "ROW(7, now(), 'u', 'api.start', 't|api.stop|x', 'success', '{}', '', '')"
    two = "ROW(7, now(), 'u|api.start|t', 'api.stop', 'x', 'success', '{}', '', '')"
    with psycopg.connect(fresh_db.admin) as conn:
        pipes, v1_equal, v2_equal = conn.execute(
            f"SELECT audit.canonical({one}::audit.events),"
            f" audit.canonical({one}::audit.events) = audit.canonical({two}::audit.events),"
            f" audit.row_hash('p', {one}::audit.events) = audit.row_hash('p', {two}::audit.events)"
        ).fetchone() or (None, None, None)
    assert "u|api.start|t|api.stop|x|success" in (pipes or "")
    assert (v1_equal, v2_equal) == (True, False)


def test_rows_written_before_the_format_change_keep_verifying(
    pg_server: EmbeddedPostgres,
) -> None:
    admin = create_database(pg_server, "rates_audit_v1")
    backend = get_backend(schema._yoyo_uri(admin))
    try:
        migrations = read_migrations(str(resources.files("rates_platform") / "migrations"))
        with backend.lock():
            backend.apply_migrations(backend.to_apply(migrations.filter(lambda m: m.id < "0007")))
    finally:
        backend.connection.close()
    superuser = pg_server.superuser_conninfo("rates_audit_v1")
    with psycopg.connect(superuser) as conn:
        for index in range(3):
            audit.record(conn, Event.ROLE_CHANGE, f"before_{index}")
    schema.migrate(superuser)
    with psycopg.connect(superuser) as conn:
        audit.record(conn, Event.ROLE_CHANGE, "after")
        conn.commit()
        formats: dict[int, int] = dict(
            conn.execute("SELECT version, first_id FROM audit.hash_formats").fetchall()
        )
        result = audit.verify(conn)
    assert formats == {1: 1, 2: 4}
    assert (result.intact, result.rows) == (True, 4)


# -- who may write what -------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [e for e in Event if e.value.startswith("rotation.") or e is Event.ROLE_CHANGE]
    + [Event.DATA_LOAD],
)
def test_an_app_login_may_write_only_the_apis_events(
    fresh_db: PreparedDatabase, event: Event
) -> None:
    with (
        psycopg.connect(fresh_db.app) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"may not write {event}"),
    ):
        audit.record(conn, event, "forged")


def rotator_login(db: PreparedDatabase) -> str:
    with psycopg.connect(db.admin, autocommit=True) as conn:
        ensure_login_member(conn, "rates_test_rotator", TEST_LOGIN_PASSWORD, "rates_rotator")
    return db.server.tcp_conninfo("rates_test_rotator", TEST_LOGIN_PASSWORD, db.name)


def test_the_rotator_may_write_its_steps_and_nothing_else(fresh_db: PreparedDatabase) -> None:
    rotator = rotator_login(fresh_db)
    with psycopg.connect(rotator) as conn:
        for event in (Event.ROTATION_CREATE, Event.ROTATION_TEST, Event.ROTATION_FINISH):
            audit.record(conn, event, "rates_app_a")
    for event in (Event.API_START, Event.ROLE_CHANGE, Event.DATA_LOAD):
        with (
            psycopg.connect(rotator) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not write"),
        ):
            audit.record(conn, event, "forged")


@pytest.mark.parametrize("event", [Event.ROTATION_SET, Event.ROTATION_RETIRE])
def test_the_rotator_cannot_write_the_credential_functions_events(
    fresh_db: PreparedDatabase, event: Event
) -> None:
    with psycopg.connect(fresh_db.admin) as conn:
        transitional = conn.execute(
            "SELECT 1 FROM audit.event_writers WHERE role_name = 'rates_rotator'"
            " AND event_type = %s",
            (event.value,),
        ).fetchone()
    assert transitional is None, "the rotator may write an event only the functions write"
    with (
        psycopg.connect(rotator_login(fresh_db)) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"may not write {event}"),
    ):
        audit.record(conn, event, "rates_app_a")


def test_inserts_inside_a_security_definer_function_are_its_owners(
    fresh_db: PreparedDatabase,
) -> None:
    with psycopg.connect(fresh_db.admin) as conn:
        conn.execute(
            "CREATE FUNCTION public.load_as_owner() RETURNS void LANGUAGE sql"
            " SECURITY DEFINER SET search_path = pg_catalog AS $$"
            " INSERT INTO audit.events (event_type, target, outcome)"
            " VALUES ('data.load', 'by definer', 'success') $$"
        )
        conn.execute("ALTER FUNCTION public.load_as_owner() OWNER TO rates_owner")
        conn.execute("GRANT EXECUTE ON FUNCTION public.load_as_owner() TO rates_app")
    with psycopg.connect(fresh_db.app) as conn:
        conn.execute("SELECT public.load_as_owner()")  # as rates_owner: bound to data.load
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not write"):
            audit.record(conn, Event.DATA_LOAD, "directly")
    with psycopg.connect(fresh_db.admin) as conn:
        actor = conn.execute(
            "SELECT actor FROM audit.events WHERE target = 'by definer'"
        ).fetchone()
    assert actor == (TEST_LOGIN_ROLE,)  # who called it is still recorded


def test_a_binding_to_a_role_that_does_not_exist_is_skipped(fresh_db: PreparedDatabase) -> None:
    with psycopg.connect(fresh_db.admin) as conn:
        conn.execute("INSERT INTO audit.event_writers VALUES ('api.stop', 'rates_no_such_role')")
    with psycopg.connect(fresh_db.app) as conn:
        audit.record(conn, Event.API_STOP, "rates-api")  # still bound through rates_app
    with (
        psycopg.connect(rotator_login(fresh_db)) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"may not write api\.stop"),
    ):
        audit.record(conn, Event.API_STOP, "rates-api")


def test_no_writer_can_bloat_the_trail_with_huge_rows(fresh_db: PreparedDatabase) -> None:
    """Every writer chooses its details (a reason, a version, the API's start): a login
    could append rows of any size, which every `audit verify` then has to read."""
    with psycopg.connect(fresh_db.admin) as conn:
        head = conn.execute("SELECT last_id FROM audit.chain_head").fetchone()
    for details, target in (({"reason": "x" * 70_000}, "rates_app_a"), ({}, "t" * 2000)):
        with (
            psycopg.connect(fresh_db.app) as conn,
            pytest.raises(psycopg.errors.CheckViolation, match="events_bounded"),
        ):
            audit.record(conn, Event.API_START, target, details=details)
    with psycopg.connect(fresh_db.admin) as conn:
        assert conn.execute("SELECT last_id FROM audit.chain_head").fetchone() == head
    with psycopg.connect(fresh_db.app) as conn:  # a reasonable row still goes in
        audit.record(conn, Event.API_START, "rates_app_a", details={"reason": "x" * 4000})
