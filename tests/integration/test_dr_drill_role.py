"""The restore drill's role (migration 0011) on PostgreSQL 16, Azure's version, migrated
by the Azure-shaped administrator: `dbaccess audit grant-drill` makes a login that reads
the rates and the audit trail, writes nothing, and outlives the access expiry job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.cli import main as dbaccess
from rates_platform.dbaccess.roles import scram_verifier
from rates_platform.dbaccess.secrets import new_password
from tests.integration.access_support import (
    AccessDb,
    access_server,
    add_person,
    prepare_access_db,
)
from tests.integration.test_audit_anchors import ENTRA_STAND_IN

RATES_TABLES = ("ports", "regions", "prices", "daily_totals")
AUDIT_TABLES = ("audit.events", "audit.chain_head", "audit.hash_formats")
WRITES = (
    "INSERT INTO prices (orig_code, dest_code, day, price)"
    " VALUES ('CNGGZ', 'EETLL', '2021-01-05', 1)",
    "UPDATE ports SET name = name",
    "DELETE FROM daily_totals",
    "TRUNCATE regions",
    "INSERT INTO audit.events (event_type, target, outcome) VALUES ('drill.grant', 'x', 'success')",
    "UPDATE audit.chain_head SET last_id = 0",
    "CREATE TABLE public.drill_was_here (id int)",
    "SELECT count(*) FROM api_keys",
    "SELECT count(*) FROM access.requests",
    "SET ROLE rates_reader",
    "GRANT rates_dr_drill TO rates_app",
)


@pytest.fixture(scope="module")
def adb() -> Iterator[AccessDb]:
    with access_server(16) as server:
        yield prepare_access_db(server, 16)


@pytest.fixture
def admin_cli(adb: AccessDb, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dbaccess` as the Azure-shaped administrator, as the access job runs it."""
    for name in ("DATABASE_URL_FILE", "DB_SECRET_STORE", "DBACCESS_LOGIN", "AUDIT_ANCHORS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", adb.admin)


def drill_login(adb: AccessDb, name: str) -> str:
    """A password login for the test (in Azure: an Entra ID principal, no password)."""
    password = new_password()
    with psycopg.connect(adb.admin, autocommit=True) as conn:
        verifier = scram_verifier(conn, name, password)
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(verifier)
            )
        )
    return adb.login(name, password)


def drill_grants(adb: AccessDb, name: str) -> list[tuple[str, str]]:
    with psycopg.connect(adb.superuser) as conn:
        rows = conn.execute(
            "SELECT actor, details ->> 'granted' FROM audit.events"
            " WHERE event_type = 'drill.grant' AND target = %s ORDER BY id",
            (name,),
        ).fetchall()
    return [(str(actor), str(granted)) for actor, granted in rows]


def reads_everything(conninfo: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        counts = [
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(table))).fetchone()
            for table in RATES_TABLES + AUDIT_TABLES
        ]
        verified = audit.verify(conn, [])
    return all(row is not None and row[0] > 0 for row in counts) and (
        verified.first_broken_id is None
    )


def reads_everything_or_refused(conninfo: str) -> bool:
    try:
        return reads_everything(conninfo)
    except psycopg.errors.InsufficientPrivilege:
        return False


@pytest.mark.usefixtures("admin_cli")
def test_a_drill_login_reads_rates_and_audit_and_writes_nothing(
    adb: AccessDb, capsys: pytest.CaptureFixture[str]
) -> None:
    conninfo = drill_login(adb, "id-rates-test-drill")
    assert not reads_everything_or_refused(conninfo)  # nothing before the grant
    for _ in range(2):  # idempotent, audited each time, as the administrator
        assert dbaccess(["audit", "grant-drill", "id-rates-test-drill"]) == 0
    assert "may read the rates" in capsys.readouterr().out
    assert drill_grants(adb, "id-rates-test-drill") == [("rates_admin", "rates_dr_drill")] * 2
    assert reads_everything(conninfo)
    for statement in WRITES:
        with psycopg.connect(conninfo) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


@pytest.mark.usefixtures("admin_cli")
def test_grant_drill_creates_an_entra_principal_and_refuses_an_unknown_login(
    adb: AccessDb, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dbaccess(["audit", "grant-drill", "id-rates-nobody"]) == 2
    assert "no Entra ID principals here" in capsys.readouterr().err
    assert drill_grants(adb, "id-rates-nobody") == []  # refused: nothing changed
    with psycopg.connect(adb.superuser, autocommit=True) as conn:
        conn.execute(ENTRA_STAND_IN)
    try:
        assert dbaccess(["audit", "grant-drill", "id-rates-entra-drill"]) == 0
        with psycopg.connect(adb.superuser) as conn:
            member = conn.execute(
                "SELECT rolcanlogin, pg_has_role(oid, 'rates_dr_drill', 'USAGE'),"
                " pg_has_role(oid, 'rates_reader', 'USAGE') FROM pg_roles WHERE rolname = %s",
                ("id-rates-entra-drill",),
            ).fetchone()
        assert member == (True, True, False)
    finally:
        with psycopg.connect(adb.superuser, autocommit=True) as conn:
            conn.execute("DROP FUNCTION public.pgaadauth_create_principal(text, boolean, boolean)")


@pytest.mark.usefixtures("admin_cli")
def test_the_expiry_job_leaves_the_drill_login_alone_but_revokes_drift(
    adb: AccessDb, tmp_path: Path
) -> None:
    conninfo = drill_login(adb, "id-rates-expire-drill")
    assert dbaccess(["audit", "grant-drill", "id-rates-expire-drill"]) == 0
    job = add_person(adb, tmp_path, "jobexpiry")
    # A membership in a policy role that no grant backs (the administrator's one bypass,
    # README "Threat model"): the same run must revoke it, so it does look for drift.
    stray = add_person(adb, tmp_path, "stray")
    with psycopg.connect(adb.admin, autocommit=True) as conn:
        conn.execute("GRANT rates_access TO CURRENT_USER WITH INHERIT FALSE, SET TRUE")
        conn.execute("SET ROLE rates_access")
        conn.execute(sql.SQL("GRANT rates_reader TO {}").format(sql.Identifier(stray.name)))
        conn.execute("RESET ROLE")
        conn.execute("REVOKE rates_access FROM CURRENT_USER")
    with psycopg.connect(conninfo) as session:
        events = job.access.expire()
        drifted = {e["login_name"] for e in events if e["kind"] == "drift"}
        assert stray.name in drifted and "id-rates-expire-drill" not in drifted
        assert session.execute("SELECT count(*) FROM prices").fetchone() == (56689,)  # open
    assert reads_everything(conninfo)  # and a new session
    with psycopg.connect(adb.superuser) as conn:
        member = conn.execute(
            "SELECT pg_has_role('id-rates-expire-drill', 'rates_dr_drill', 'USAGE'),"
            " pg_has_role(%s, 'rates_reader', 'USAGE')",
            (stray.name,),
        ).fetchone()
    assert member == (True, False)
