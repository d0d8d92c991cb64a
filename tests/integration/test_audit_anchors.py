"""Anchors outside the database: a rewritten history is reported even when every hash
was recomputed, whoever did it (a superuser, or a non-superuser member of rates_owner)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import psycopg
import pytest

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event
from rates_platform.dbaccess.cli import EXIT_BROKEN_CHAIN
from rates_platform.dbaccess.cli import main as dbaccess
from rates_platform.dbaccess.roles import ensure_login_member
from tests.support import TEST_LOGIN_PASSWORD, PreparedDatabase

ROGUE_OWNER = "rates_test_rogue_owner"

# What a superuser (or the table's owner) does to rewrite history: recompute every hash
# from ``first`` on with the database's own function, and move the head along.
REHASH_FROM = """
DO $$
DECLARE
    prev text := (SELECT hash FROM audit.events WHERE id < {first} ORDER BY id DESC LIMIT 1);
    e audit.events;
BEGIN
    FOR e IN SELECT * FROM audit.events WHERE id >= {first} ORDER BY id LOOP
        e.prev_hash := coalesce(prev, repeat('0', 64));
        e.hash := audit.row_hash(e.prev_hash, e);
        UPDATE audit.events SET prev_hash = e.prev_hash, hash = e.hash WHERE id = e.id;
        prev := e.hash;
    END LOOP;
    UPDATE audit.chain_head SET last_id = (SELECT max(id) FROM audit.events),
                                last_hash = prev;
END
$$
"""


@pytest.fixture
def cli(fresh_db: PreparedDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``dbaccess audit ...`` against ``fresh_db`` with a file sink; returns its path."""
    for name in ("DATABASE_URL_FILE", "DB_SECRET_STORE", "DBACCESS_LOGIN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", fresh_db.admin)
    anchors = tmp_path / "anchors.jsonl"
    monkeypatch.setenv("AUDIT_ANCHORS", f"file:{anchors}")
    return anchors


def append(db: PreparedDatabase, *targets: str) -> dict[str, int]:
    """Append api.start events as the API's login; every target's id."""
    with psycopg.connect(db.app) as conn:
        for target in targets:
            audit.record(conn, Event.API_START, target)
    with psycopg.connect(db.admin) as conn:
        return dict(conn.execute("SELECT target, id FROM audit.events").fetchall())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = dbaccess(["audit", *argv])
    return code, capsys.readouterr().out


def as_superuser(conninfo: str, *statements: str) -> None:
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET session_replication_role = replica")  # triggers off
        for statement in statements:
            conn.execute(statement)


def test_anchors_are_appended_to_a_private_file_and_verify(
    fresh_db: PreparedDatabase, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    append(fresh_db, "one", "two")
    assert run(capsys, "anchor")[0] == 0
    append(fresh_db, "three")
    assert run(capsys, "anchor")[0] == 0
    assert stat.S_IMODE(cli.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in cli.read_text().splitlines()]
    with psycopg.connect(fresh_db.admin) as conn:
        head = conn.execute("SELECT last_id, last_hash FROM audit.chain_head").fetchone()
        count = conn.execute("SELECT count(*) FROM audit.events").fetchone()
    assert (lines[-1]["id"], lines[-1]["hash"]) == head
    assert lines[-1]["rows"] == count[0] if count else None
    assert lines[1]["prev"] != lines[0]["prev"]  # each line chains to the one before
    code, out = run(capsys, "verify")
    assert (code, "2 anchors hold" in out) == (0, True), out
    os.environ.pop("AUDIT_ANCHORS")
    code, out = run(capsys, "verify")
    assert (code, "no anchors checked" in out) == (0, True), out


def test_a_superuser_rewrite_with_recomputed_hashes_is_reported(
    fresh_db: PreparedDatabase, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = append(fresh_db, "first", "second", "third")
    run(capsys, "anchor")
    as_superuser(
        fresh_db.admin,
        f"DELETE FROM audit.events WHERE id = {ids['second']}",
        REHASH_FROM.format(first=ids["second"]),
    )
    with psycopg.connect(fresh_db.admin) as conn:
        assert audit.verify(conn).intact  # the chain alone cannot tell
    code, out = run(capsys, "verify")
    assert code == EXIT_BROKEN_CHAIN
    assert f"broken at event {ids['third']}: its hash is not the one the anchor" in out


def test_a_rewritten_row_with_recomputed_hashes_is_reported(
    fresh_db: PreparedDatabase, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = append(fresh_db, "first", "second", "third")
    run(capsys, "anchor")
    as_superuser(
        fresh_db.admin,
        f"UPDATE audit.events SET target = 'forged' WHERE id = {ids['second']}",
        REHASH_FROM.format(first=ids["second"]),
    )
    code, out = run(capsys, "verify")
    assert code == EXIT_BROKEN_CHAIN
    assert f"broken at event {ids['third']}: its hash is not the one the anchor" in out
    assert "rewritten and rehashed" in out


def test_an_owner_member_disabling_triggers_and_resetting_the_head_is_reported(
    fresh_db: PreparedDatabase, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = append(fresh_db, "first", "second")
    run(capsys, "anchor")
    with psycopg.connect(fresh_db.admin, autocommit=True) as conn:
        ensure_login_member(conn, ROGUE_OWNER, TEST_LOGIN_PASSWORD, group="rates_owner")
    rogue = fresh_db.server.tcp_conninfo(ROGUE_OWNER, TEST_LOGIN_PASSWORD, fresh_db.name)
    with psycopg.connect(rogue) as conn:
        is_superuser = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        assert conn.execute(is_superuser).fetchone() == (False,)
        # The owner (so any member with its privileges) may disable user triggers.
        conn.execute("ALTER TABLE audit.events DISABLE TRIGGER USER")
        conn.execute("DELETE FROM audit.events")
        conn.execute("UPDATE audit.chain_head SET last_id = 0, last_hash = repeat('0', 64)")
        conn.execute("ALTER TABLE audit.events ENABLE TRIGGER USER")
    append(fresh_db, "after the reset")  # a fresh, self-consistent chain
    with psycopg.connect(fresh_db.admin) as conn:
        assert audit.verify(conn).intact  # the chain alone cannot tell
    code, out = run(capsys, "verify")
    assert code == EXIT_BROKEN_CHAIN
    assert f"broken at event {ids['second']}: gone" in out
    code, out = run(capsys, "anchor")
    assert code == EXIT_BROKEN_CHAIN and "nothing anchored" in out
    assert len(cli.read_text().splitlines()) == 1


@pytest.mark.parametrize("fix_head", [True, False], ids=["head-reset", "tail-truncated"])
def test_a_removed_tail_is_reported_whether_or_not_the_head_was_moved_back(
    fresh_db: PreparedDatabase, cli: Path, capsys: pytest.CaptureFixture[str], fix_head: bool
) -> None:
    ids = append(fresh_db, "first", "second", "third")
    run(capsys, "anchor")
    statements = [f"DELETE FROM audit.events WHERE id > {ids['first']}"]
    if fix_head:
        statements.append(
            "UPDATE audit.chain_head SET (last_id, last_hash) = "
            f"(SELECT id, hash FROM audit.events WHERE id = {ids['first']})"
        )
    as_superuser(fresh_db.admin, *statements)
    code, out = run(capsys, "verify")
    assert code == EXIT_BROKEN_CHAIN
    assert f"broken at event {ids['first']}: the chain ends here, but the anchor of" in out
    assert "tail was removed or the head reset" in out


def test_an_edited_or_removed_anchor_line_is_reported(
    fresh_db: PreparedDatabase, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for target in ("one", "two", "three"):
        append(fresh_db, target)
        run(capsys, "anchor")
    lines = cli.read_text().splitlines()
    cli.write_text("\n".join([lines[0], lines[2]]) + "\n")
    code, out = run(capsys, "verify")
    assert code == EXIT_BROKEN_CHAIN
    assert "line 2 does not follow line 1" in out
    code = dbaccess(["audit", "anchor"])  # a broken sink is not extended
    assert code != 0 and len(cli.read_text().splitlines()) == 2


def test_a_removed_anchor_file_is_reported(
    fresh_db: PreparedDatabase, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    append(fresh_db, "one")
    run(capsys, "anchor")
    cli.unlink()
    code, out = run(capsys, "verify")
    assert code == EXIT_BROKEN_CHAIN
    assert "audit anchors broken" in out and "no anchor" in out


def test_a_bad_sink_is_a_configuration_error(
    fresh_db: PreparedDatabase, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dbaccess(["audit", "anchor", "--sink", "s3://bucket"]) == 2
    assert "expected file:PATH" in capsys.readouterr().err
    os.environ.pop("AUDIT_ANCHORS")
    assert dbaccess(["audit", "anchor"]) == 2
    assert "no anchor sink" in capsys.readouterr().err


def test_an_auditor_login_anchors_and_verifies_but_writes_nothing(
    fresh_db: PreparedDatabase,
    cli: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    append(fresh_db, "one")
    with psycopg.connect(fresh_db.admin, autocommit=True) as conn:
        ensure_login_member(conn, "rates_test_auditor", TEST_LOGIN_PASSWORD, "rates_auditor")
    auditor = fresh_db.server.tcp_conninfo("rates_test_auditor", TEST_LOGIN_PASSWORD, fresh_db.name)
    monkeypatch.setenv("DATABASE_URL", auditor)
    assert run(capsys, "anchor")[0] == 0
    assert run(capsys, "verify")[0] == 0
    for statement in (
        "INSERT INTO audit.events (event_type, target, outcome)"
        " VALUES ('api.start', 'x', 'success')",
        "UPDATE audit.chain_head SET last_id = 0",
        "DELETE FROM audit.event_writers",
    ):
        with psycopg.connect(auditor) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


# What Azure's pgaadauth extension does for an Entra ID administrator, for the test.
ENTRA_STAND_IN = """
CREATE FUNCTION public.pgaadauth_create_principal(name text, admin boolean, mfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    EXECUTE format('CREATE ROLE %I LOGIN', name);
    RETURN format('Created role for "%s"', name);
END
$$
"""


def test_grant_auditor_creates_an_entra_principal_once_and_audits_it(
    fresh_db: PreparedDatabase, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    principal = f"id-rates-test-audit-{fresh_db.name}"
    assert dbaccess(["audit", "grant-auditor", principal]) == 2
    assert "no Entra ID principals here" in capsys.readouterr().err
    with psycopg.connect(fresh_db.admin) as conn:
        conn.execute(ENTRA_STAND_IN)
    for _ in range(2):  # idempotent
        assert dbaccess(["audit", "grant-auditor", principal]) == 0
    with psycopg.connect(fresh_db.admin) as conn:
        member = conn.execute("SELECT pg_has_role(%s, 'rates_auditor', 'USAGE')", (principal,))
        assert member.fetchone() == (True,)
        changes = conn.execute(
            "SELECT count(*) FROM audit.events WHERE event_type = 'role.change' AND target = %s",
            (principal,),
        ).fetchone()
    assert changes == (2,)
    assert run(capsys, "anchor")[0] == 0
