"""Least privilege of rotation on PostgreSQL 16 (the `pgserver` wheel) and 18, everything
migrated and bootstrapped by an Azure-shaped administrator (never the superuser)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from yoyo import get_backend, read_migrations

from rates_platform import schema
from rates_platform.dbaccess.bootstrap import bootstrap
from rates_platform.dbaccess.roles import scram_verifier
from rates_platform.dbaccess.rotation import ROTATION_LOCK, RotationPolicy, Rotator
from rates_platform.dbaccess.secrets import CURRENT, PREVIOUS, LocalFileStore, with_stage
from rates_platform.devdb import EmbeddedPostgres
from tests.support import SAMPLE, PreparedDatabase, prepare_database, start_server

_copies = itertools.count(1)


@pytest.fixture(scope="module", params=["16", "18"])
def pg_version_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedPostgres]:
    server = start_server(tmp_path_factory.mktemp(f"pg{request.param}"), version=request.param)
    prepare_database(server, "privileges_template")  # migrated by the Azure-shaped admin
    yield server
    server.stop()


@pytest.fixture
def db(pg_version_server: EmbeddedPostgres) -> PreparedDatabase:
    return prepare_database(
        pg_version_server, f"privileges_{next(_copies)}", template="privileges_template"
    )


@pytest.fixture
def rotator(db: PreparedDatabase, tmp_path: Path) -> Rotator:
    store = LocalFileStore(tmp_path / "secrets.enc")
    server = make_conninfo(host="127.0.0.1", port=db.server.port, dbname=db.name)
    return bootstrap(db.migrator, store, server, RotationPolicy(grace=timedelta(seconds=0.5)))


def test_runs_on_the_intended_server_as_a_non_superuser_admin(db: PreparedDatabase) -> None:
    with psycopg.connect(db.migrator) as conn:
        assert conn.info.server_version // 10000 in (16, 18)
        flags = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert flags == (False, True, True)
        # as an Azure admin: it cannot hand pg_signal_backend on
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("GRANT pg_signal_backend TO rates_rotator")


def test_migrate_bootstrap_and_rotations_work_as_the_azure_shaped_admin(
    db: PreparedDatabase, rotator: Rotator
) -> None:
    store = rotator.store
    for _ in range(3):
        assert rotator.run(force=True) == "rotated"
    current = with_stage(store, "rates-db-app", CURRENT)
    previous = with_stage(store, "rates-db-app", PREVIOUS)
    assert current is not None and previous is not None
    with psycopg.connect(make_conninfo(db.app, **current.login())) as conn:
        assert conn.execute("SELECT count(*) FROM prices").fetchone() == (56689,)
    with psycopg.connect(db.admin) as conn:
        owners = {
            owner
            for (owner,) in conn.execute(
                "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname IN ('public', 'audit') AND c.relname NOT LIKE '%%yoyo%%'"
            )
        }
    assert owners == {"rates_owner"}


def test_the_rotator_holds_no_createrole_no_admin_and_cannot_act_as_a_slot(
    rotator: Rotator,
) -> None:
    with psycopg.connect(rotator.conninfo, autocommit=True) as conn:
        flags = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
            " WHERE rolname = current_user"
        ).fetchone()
        assert flags == (False, False, False, False)
        memberships = conn.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
            " WHERE m.member = 'rates_rotator'::regrole"
        ).fetchall()
        assert memberships == []
        for statement in (
            "CREATE ROLE backdoor LOGIN PASSWORD 'x'",
            "ALTER ROLE rates_app_a VALID UNTIL 'infinity'",
            "ALTER ROLE rates_app_a LOGIN",
            "GRANT rates_app TO rates_rotator",
            "SET ROLE rates_app_a",
            "SET ROLE rates_credentials",
            "SELECT count(*) FROM prices",
            "UPDATE credentials.settings SET max_lifetime = '100 years'",
            "SELECT credentials.bump('rates_app_a')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def _call(conninfo: str, statement: str, *params: object) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(statement, params)


def test_the_functions_refuse_other_roles_plaintext_and_long_lifetimes(
    rotator: Rotator,
) -> None:
    with psycopg.connect(rotator.conninfo, autocommit=True) as conn:
        verifier = scram_verifier(conn, "rates_app_a", "a password")
        (lifetime,) = conn.execute("SELECT max_lifetime FROM credentials.settings").fetchone()
    assert lifetime == rotator.policy.lifetime  # set by bootstrap
    soon = datetime.now(UTC) + timedelta(days=1)
    call_set = "SELECT credentials.set_password(%s, %s, %s, 'v')"
    refused = [
        (("rates_owner", verifier, soon), psycopg.errors.InsufficientPrivilege),
        (("rates_admin", verifier, soon), psycopg.errors.InsufficientPrivilege),
        (("rates_rotator", verifier, soon), psycopg.errors.InsufficientPrivilege),
        (("rates_app_a", "a plaintext password", soon), psycopg.errors.InvalidParameterValue),
        (("rates_app_a", "SCRAM-SHA-256$plaintext", soon), psycopg.errors.InvalidParameterValue),
        (("rates_app_a", verifier, None), psycopg.errors.InvalidParameterValue),
        (
            ("rates_app_a", verifier, soon + timedelta(days=61)),
            psycopg.errors.InvalidParameterValue,
        ),
    ]
    for params, error in refused:
        with pytest.raises(error):
            _call(rotator.conninfo, call_set, *params)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        _call(
            rotator.conninfo,
            "SELECT credentials.set_password(%s, %s, 'infinity', 'v')",
            "rates_app_a",
            verifier,
        )
    for role in ("rates_owner", "rates_admin", "rates_credentials", "postgres"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _call(rotator.conninfo, "SELECT credentials.disable_login(%s, 'retired', '')", role)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _call(rotator.conninfo, "SELECT credentials.end_sessions(%s)", role)


def test_only_the_rotator_may_call_the_functions(db: PreparedDatabase, rotator: Rotator) -> None:
    with psycopg.connect(db.app, autocommit=True) as conn:
        for statement in (
            "SELECT credentials.end_sessions('rates_app_a')",
            "SELECT credentials.disable_login('rates_app_a', 'retired', '')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_the_rotator_cannot_write_event_types_that_are_not_its_own(rotator: Rotator) -> None:
    with psycopg.connect(rotator.conninfo, autocommit=True) as conn:
        for event in ("rotation.set", "rotation.retire", "role.change", "data.load", "api.start"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(
                    "INSERT INTO audit.events (event_type, target, outcome)"
                    " VALUES (%s, 'rates_app_a', 'success')",
                    (event,),
                )


def test_no_session_of_a_retired_slot_survives(db: PreparedDatabase, rotator: Rotator) -> None:
    store = rotator.store
    rotator.run(force=True)
    previous = with_stage(store, "rates-db-app", PREVIOUS)
    assert previous is not None
    sessions = [
        psycopg.connect(make_conninfo(db.app, **previous.login()), autocommit=True)
        for _ in range(3)
    ]
    rotator.run(force=True)  # waits for the grace, retires the previous slot, rotates
    for session in sessions:
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    with psycopg.connect(db.admin) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
            (previous.value["username"],),
        ).fetchone()
    assert left == (0,)


def test_a_database_a_superuser_migrated_to_0007_upgrades_in_place(
    pg_version_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    """As deployed with compose: 0001-0007 applied by the superuser (the rotator then had
    CREATEROLE, ADMIN on the slots and pg_signal_backend); 0008 takes those away."""
    name = f"upgrade_{next(_copies)}"
    superuser = pg_version_server.superuser_conninfo(name)
    with psycopg.connect(pg_version_server.superuser_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrations = read_migrations(str(resources.files("rates_platform").joinpath("migrations")))
    backend = get_backend(schema._yoyo_uri(superuser))
    try:
        with backend.lock():
            backend.apply_migrations(backend.to_apply(migrations.filter(lambda m: m.id < "0008")))
    finally:
        backend.connection.close()
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute("ALTER ROLE rates_rotator CREATEROLE")  # as the old 0005 left it
        conn.execute(
            "GRANT rates_app_a, rates_app_b TO rates_rotator"
            " WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"
        )
    assert "0008.credentials-functions" in schema.migrate(superuser)
    schema.load_sample(superuser, SAMPLE)
    with psycopg.connect(superuser) as conn:
        flags = conn.execute(
            "SELECT rolcreaterole, pg_has_role('rates_rotator', 'pg_signal_backend', 'MEMBER'),"
            " (SELECT count(*) FROM pg_auth_members WHERE member = 'rates_rotator'::regrole)"
            " FROM pg_roles WHERE rolname = 'rates_rotator'"
        ).fetchone()
    assert flags == (False, False, 0)
    store = LocalFileStore(tmp_path / "secrets.enc")
    server = make_conninfo(host="127.0.0.1", port=pg_version_server.port, dbname=name)
    rotator = bootstrap(superuser, store, server, RotationPolicy(grace=timedelta(seconds=0.2)))
    assert rotator.run(force=True) == "rotated"
    current = with_stage(store, "rates-db-app", CURRENT)
    assert current is not None
    with psycopg.connect(make_conninfo(server, **current.login())) as conn:
        assert conn.execute("SELECT count(*) FROM prices").fetchone() == (56689,)


def test_no_other_login_can_stall_rotation_by_holding_its_lock(
    db: PreparedDatabase, rotator: Rotator
) -> None:
    """Any login may take any advisory lock: the API's leaked login used to hold the
    rotation's forever ("another rotation is running", exit 3), so it was never evicted."""
    with psycopg.connect(db.app, autocommit=True) as app:
        app.execute("SELECT pg_advisory_lock(%s)", (0x5241_5445_524F_54,))  # the old key
        with pytest.raises(psycopg.errors.InsufficientPrivilege), app.transaction():
            app.execute(ROTATION_LOCK)
        assert rotator.run(force=True) == "rotated"


def test_a_malformed_verifier_is_refused_not_taken_as_a_plaintext_password(
    db: PreparedDatabase, rotator: Rotator
) -> None:
    """PostgreSQL takes anything it cannot parse as a SCRAM secret for a plaintext
    password (hashing it), which then sits in the server's statement log."""
    soon = datetime.now(UTC) + timedelta(days=1)
    key = "A" * 43 + "="
    for malformed in (
        "SCRAM-SHA-256$4096:abc=$x:y",  # keys too short
        f"SCRAM-SHA-256$99999999999999999999:AAAA${key}:{key}",  # iterations overflow
        f"SCRAM-SHA-256$4096:A=AA${key}:{key}",  # salt not base64
        f"SCRAM-SHA-256$0:AAAA${key}:{key}",  # no iterations
    ):
        for call, params in (
            ("SELECT credentials.set_password('rates_app_b', %s, %s, 'v')", (malformed, soon)),
            ("SELECT credentials.set_rotator_password(%s, %s)", (malformed, soon)),
        ):
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                _call(rotator.conninfo, call, *params)
    with psycopg.connect(db.admin) as conn:
        assert conn.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'rates_app_b'"
        ).fetchone() == (False,)
    with psycopg.connect(rotator.conninfo, autocommit=True) as conn:  # a real one still works
        verifier = scram_verifier(conn, "rates_app_b", "a password")
    _call(
        rotator.conninfo,
        "SELECT credentials.set_password('rates_app_b', %s, %s, 'v')",
        verifier,
        soon,
    )
