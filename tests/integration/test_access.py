"""Access requests against real PostgreSQL 16 and 18, migrated by an Azure-shaped admin.

The rules are the database's (SECURITY DEFINER functions); these tests act as the
people themselves, each with their own login, and check what PostgreSQL then allows.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rates_platform.access import queries
from rates_platform.access.domain import RolePolicy, parse_policy
from rates_platform.access.errors import AccessError, NotAllowed, WrongState
from rates_platform.access.notify import JsonLinesSink, Notifier, WebhookSink
from rates_platform.access.service import AccessService
from rates_platform.dbaccess import audit
from tests.integration.access_support import (
    POLICY_FILE,
    AccessDb,
    Person,
    access_server,
    add_person,
    can_login,
    count_ports,
    events_for,
    prepare_access_db,
    service,
)
from tests.support import free_port

SHORT = 0.1  # minutes: a grant of six seconds (room to connect on a busy machine)


@pytest.fixture(scope="module", params=[16, 18], ids=["pg16", "pg18"])
def adb(request: pytest.FixtureRequest) -> Iterator[AccessDb]:
    with access_server(request.param) as server:
        yield prepare_access_db(server, request.param)


@pytest.fixture
def notify_file(tmp_path: Path) -> Path:
    return tmp_path / "notifications.jsonl"


@pytest.fixture
def alice(adb: AccessDb, tmp_path: Path, notify_file: Path) -> Person:
    return add_person(adb, tmp_path, "alice", notify=notify_file)


@pytest.fixture
def approvers(adb: AccessDb, tmp_path: Path, notify_file: Path) -> list[Person]:
    return [add_person(adb, tmp_path, "appr", approver=True, notify=notify_file) for _ in range(4)]


def sessions_of(adb: AccessDb, login: str) -> int:
    with psycopg.connect(adb.superuser) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (login,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def alive(conn: psycopg.Connection[object]) -> bool:
    try:
        conn.execute("SELECT 1").fetchone()
        return True
    except psycopg.OperationalError:
        return False


def granted(
    adb: AccessDb, person: Person, approvers: list[Person], minutes: float
) -> dict[str, Any]:
    row = person.access.request("rates_reader", minutes, "look into a pricing ticket", False)
    result = approvers[0].access.approve(row["id"])
    assert result["status"] == "granted"
    return result


def test_the_administrator_holds_no_admin_on_grantable_roles_and_cannot_grant_them(
    adb: AccessDb, alice: Person
) -> None:
    with psycopg.connect(adb.superuser) as conn:
        holders = conn.execute(
            "SELECT g.rolname, m.rolname FROM pg_auth_members a "
            "JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
            "WHERE g.rolname IN ('rates_reader', 'rates_operator') AND a.admin_option"
        ).fetchall()
        superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert superuser.fetchone() == (True,)
        assert conn.info.server_version // 10000 == adb.version
    assert sorted(holders) == [("rates_operator", "rates_access"), ("rates_reader", "rates_access")]
    for conninfo in (adb.admin, alice.conninfo):
        with psycopg.connect(conninfo, autocommit=True) as conn:
            assert conn.execute(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone() == (False,)
            with pytest.raises(psycopg.Error):
                conn.execute(f'GRANT rates_reader TO "{alice.name}"')
    assert not can_read_as(alice.conninfo)


def can_read_as(conninfo: str) -> bool:
    try:
        count_ports(conninfo)
        return True
    except psycopg.errors.InsufficientPrivilege:
        return False


def test_nobody_has_table_privileges_on_the_workflow_tables(adb: AccessDb, alice: Person) -> None:
    for conninfo in (adb.admin, alice.conninfo):
        with psycopg.connect(conninfo) as conn:
            for table in ("access.requests", "access.approvals", "access.people", "access.policy"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(f"SELECT * FROM {table}")
                conn.rollback()


def test_self_approval_is_refused(adb: AccessDb, tmp_path: Path) -> None:
    carol = add_person(adb, tmp_path, "carol", approver=True)
    row = carol.access.request("rates_reader", 5, "check the January load", False)
    with pytest.raises(NotAllowed, match="own request"):
        carol.access.approve(row["id"])
    assert carol.access.show(row["id"])["status"] == "pending"


def test_one_of_two_approvals_gives_nothing_the_second_gives_access(
    adb: AccessDb, alice: Person, approvers: list[Person]
) -> None:
    row = alice.access.request("rates_operator", 5, "fix a mistyped price", False)
    login = f"{alice.name}_r{row['id']}"
    first = approvers[0].access.approve(row["id"])
    assert first["status"] == "pending"
    assert not can_login(adb.grant_login(login, alice.pgpass))
    with pytest.raises(WrongState, match="already"):
        approvers[0].access.approve(row["id"])  # each approver counts once
    second = approvers[1].access.approve(row["id"])
    assert second["status"] == "granted"
    with psycopg.connect(adb.grant_login(login, alice.pgpass)) as conn:
        conn.execute("UPDATE prices SET price = price WHERE false")
        assert conn.execute("SELECT count(*) FROM ports").fetchone() == (143,)
    assert not can_read_as(alice.conninfo)  # the person's own login still has nothing
    shown = alice.access.show(row["id"])
    assert sorted(shown["approvers"]) == sorted([approvers[0].name, approvers[1].name])


def test_a_non_approver_cannot_approve(adb: AccessDb, alice: Person, tmp_path: Path) -> None:
    bob = add_person(adb, tmp_path, "bob")
    row = alice.access.request("rates_reader", 5, "look at one lane", False)
    with pytest.raises(NotAllowed, match="may not approve"):
        bob.access.approve(row["id"])


def test_parallel_approvals_give_exactly_one_grant(
    adb: AccessDb, alice: Person, approvers: list[Person]
) -> None:
    row = alice.access.request("rates_reader", 5, "parallel approvals", False)
    barrier = threading.Barrier(len(approvers))
    outcomes: list[str] = []

    def approve(person: Person) -> None:
        barrier.wait()
        try:
            outcomes.append(person.access.approve(row["id"])["status"])
        except WrongState:
            outcomes.append("refused")

    threads = [threading.Thread(target=approve, args=(p,)) for p in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["granted"] + ["refused"] * (len(approvers) - 1)
    kinds = [kind for kind, _ in events_for(adb, row["id"])]
    assert kinds.count("access.grant") == 1 and kinds.count("access.approve") == 1


def test_at_expiry_new_logins_are_refused_without_the_job_and_the_job_ends_sessions(
    adb: AccessDb, alice: Person, approvers: list[Person]
) -> None:
    row = granted(adb, alice, approvers, SHORT)
    login = str(row["login_name"])
    grant = adb.grant_login(login, alice.pgpass)
    plain = psycopg.connect(grant, autocommit=True)
    switched = psycopg.connect(grant, autocommit=True)
    switched.execute("SET ROLE rates_reader")
    assert switched.execute("SELECT current_user").fetchone() == ("rates_reader",)
    ends = row["ends_at"]
    assert isinstance(ends, datetime)
    time.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.5)
    # No job has run: the grant is still "granted", yet VALID UNTIL refuses a new login.
    assert alice.access.show(row["id"])["status"] == "granted"
    assert not can_login(grant)
    assert alive(plain) and alive(switched)  # what the job is for
    events = approvers[2].access.expire()
    assert [e["kind"] for e in events if e["request_id"] == row["id"]] == ["expired"]
    assert not alive(plain) and not alive(switched)
    assert sessions_of(adb, login) == 0
    assert alice.access.show(row["id"])["status"] == "expired"
    plain.close()
    switched.close()


def test_revoke_ends_sessions_and_logins_at_once(
    adb: AccessDb, alice: Person, approvers: list[Person]
) -> None:
    row = granted(adb, alice, approvers, 10)
    grant = adb.grant_login(str(row["login_name"]), alice.pgpass)
    plain = psycopg.connect(grant, autocommit=True)
    switched = psycopg.connect(grant, autocommit=True)
    switched.execute("SET ROLE rates_reader")
    assert count_ports(grant) == 143
    revoked = approvers[1].access.revoke(row["id"], "done early")
    assert revoked["status"] == "revoked"
    assert not alive(plain) and not alive(switched)
    assert not can_login(grant)
    plain.close()
    switched.close()


def test_removing_a_person_ends_their_access(
    adb: AccessDb, alice: Person, approvers: list[Person]
) -> None:
    row = granted(adb, alice, approvers, 10)
    grant = adb.grant_login(str(row["login_name"]), alice.pgpass)
    under_grant = psycopg.connect(grant, autocommit=True)
    own = psycopg.connect(alice.conninfo, autocommit=True)
    ended = service(adb.admin, Path("/dev/null")).remove_person(alice.name)
    assert ended >= 2
    assert not alive(under_grant) and not alive(own)
    assert not can_login(grant) and not can_login(alice.conninfo)
    assert approvers[0].access.show(row["id"])["status"] == "revoked"
    under_grant.close()
    own.close()


def test_break_glass_grants_at_once_alerts_and_waits_for_review(
    adb: AccessDb, alice: Person, approvers: list[Person], notify_file: Path
) -> None:
    with pytest.raises(AccessError, match="outside"):
        alice.access.request("rates_operator", 31, "too long for an emergency", True)
    row = alice.access.request("rates_operator", 10, "prices are wrong in production", True)
    assert row["status"] == "granted" and row["approvals_needed"] == 0
    assert count_ports(adb.grant_login(str(row["login_name"]), alice.pgpass)) == 143
    alerts = [json.loads(line) for line in notify_file.read_text().splitlines()]
    assert any(a["event"] == "access.emergency" and a["id"] == row["id"] for a in alerts)
    # The job notifies a new emergency once too, should the requester's client not have.
    job_runs = [
        [e["kind"] for e in approvers[0].access.expire() if e["request_id"] == row["id"]]
        for _ in range(2)
    ]
    assert job_runs == [["emergency"], []]
    unreviewed = [r["id"] for r in approvers[0].access.requests(unreviewed=True)]
    assert row["id"] in unreviewed
    assert row["id"] in [r["id"] for r in approvers[0].access.alert_unreviewed()]
    with pytest.raises(NotAllowed):
        alice.access.review(row["id"], "reviewing myself")
    approvers[0].access.review(row["id"], "the fix was right")
    assert row["id"] not in [r["id"] for r in approvers[0].access.requests(unreviewed=True)]
    kinds = [kind for kind, _ in events_for(adb, row["id"])]
    assert kinds == ["access.request", "access.emergency", "access.grant", "access.review"]


def test_every_step_is_in_the_chain_with_its_actor_and_the_chain_verifies(
    adb: AccessDb, alice: Person, approvers: list[Person]
) -> None:
    row = alice.access.request("rates_operator", SHORT, "audit trail check", False)
    approvers[0].access.approve(row["id"])
    approvers[1].access.approve(row["id"])
    time.sleep(SHORT * 60 + 0.5)
    approvers[2].access.expire()
    denied = alice.access.request("rates_reader", 5, "will be denied", False)
    approvers[0].access.deny(denied["id"], "not needed")
    assert events_for(adb, row["id"]) == [
        ("access.request", alice.name),
        ("access.approve", approvers[0].name),
        ("access.approve", approvers[1].name),
        ("access.grant", approvers[1].name),
        ("access.expire", approvers[2].name),
    ]
    assert events_for(adb, denied["id"]) == [
        ("access.request", alice.name),
        ("access.deny", approvers[0].name),
    ]
    with psycopg.connect(adb.superuser) as conn:
        added = conn.execute(
            "SELECT actor FROM audit.events WHERE event_type = 'user.add' AND target = %s",
            (f"person:{alice.name}",),
        ).fetchall()
        assert len(added) == 1
        assert audit.verify(conn).intact


def test_a_statement_run_under_a_grant_shows_in_its_activity(
    adb: AccessDb, alice: Person, approvers: list[Person]
) -> None:
    row = granted(adb, alice, approvers, 5)
    marker = f"activity-marker-{row['id']}"
    with psycopg.connect(adb.grant_login(str(row["login_name"]), alice.pgpass)) as conn:
        conn.execute(f"SELECT count(*) FROM ports WHERE code <> '{marker}'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the grant cannot hide
            conn.execute("SET log_statement = 'none'")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        statements = approvers[0].access.activity(row["id"], adb.server.log_file)
        if any(marker in s.text for s in statements):
            break
        time.sleep(0.1)
    assert any(marker in s.text for s in statements)
    others = approvers[0].access.activity(
        granted(adb, alice, approvers, 5)["id"], adb.server.log_file
    )
    assert not any(marker in s.text for s in others)


def test_a_failing_notification_never_blocks_a_decision(
    adb: AccessDb, alice: Person, approvers: list[Person], tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    sink_file = tmp_path / "still-delivered.jsonl"
    notifier = Notifier(
        [WebhookSink(dead, timeout=1), JsonLinesSink(sink_file)], attempts=3, backoff=0.01
    )
    approver = AccessService(approvers[0].conninfo, notifier, approvers[0].pgpass)
    row = alice.access.request("rates_reader", 5, "notification outage", False)
    assert approver.approve(row["id"])["status"] == "granted"
    assert approver.notification_failures == {"webhook": 1}
    assert json.loads(sink_file.read_text())["event"] == "access.grant"


def test_a_membership_given_behind_the_functions_back_is_revoked_and_reported(
    adb: AccessDb, alice: Person, approvers: list[Person]
) -> None:
    # The administrator created rates_access, so it can make itself able to act as it:
    # the one bypass PostgreSQL leaves an administrator. The job undoes it and reports it.
    with psycopg.connect(adb.admin, autocommit=True) as conn:
        conn.execute("GRANT rates_access TO CURRENT_USER WITH INHERIT FALSE, SET TRUE")
        conn.execute("SET ROLE rates_access")
        conn.execute(f'GRANT rates_reader TO "{alice.name}"')
        conn.execute("RESET ROLE")
        conn.execute("REVOKE rates_access FROM CURRENT_USER")
    assert can_read_as(alice.conninfo)
    events = approvers[0].access.expire()
    assert [(e["kind"], e["login_name"]) for e in events if e["kind"] == "drift"] == [
        ("drift", alice.name)
    ]
    assert not can_read_as(alice.conninfo)


def test_policy_refuses_unknown_roles_and_people_cannot_apply_it(
    adb: AccessDb, alice: Person
) -> None:
    rule = RolePolicy("x", 1, ("approvers",), 5, True, 5, 5)
    admin = service(adb.admin, Path("/dev/null"))
    with pytest.raises(AccessError, match="not a grantable role"):
        admin.apply_policy({"rates_app": rule})
    with pytest.raises(NotAllowed):
        alice.access.apply_policy({"rates_reader": rule})
    with pytest.raises(AccessError, match="not a grantable role in the policy"):
        alice.access.request("rates_app", 5, "the API's role", False)


def test_entra_people_need_azure_and_nothing_changes_without_it(adb: AccessDb) -> None:
    admin = service(adb.admin, Path("/dev/null"))
    with pytest.raises(AccessError, match="pgaadauth_create_principal"):
        admin.add_person("erin", approver=False, groups=[], password=None, entra=True)
    assert "erin" not in [p["name"] for p in admin.people()]


def test_an_undecided_request_lapses_and_can_no_longer_be_approved(
    adb: AccessDb, alice: Person, approvers: list[Person]
) -> None:
    row = alice.access.request("rates_reader", 5, "nobody will answer in time", False)
    # The policy's shortest wait is a minute: move this request's deadline instead of
    # sleeping through it (the superuser, as a clock would).
    with psycopg.connect(adb.superuser, autocommit=True) as conn:
        conn.execute(
            "UPDATE access.requests SET decide_by = now() - interval '1 second' WHERE id = %s",
            (row["id"],),
        )
    with pytest.raises(WrongState, match="not decided in time"):
        approvers[0].access.approve(row["id"])
    events = approvers[1].access.expire()
    assert [e["kind"] for e in events if e["request_id"] == row["id"]] == ["lapsed"]
    assert alice.access.show(row["id"])["status"] == "lapsed"
    assert [kind for kind, _ in events_for(adb, row["id"])] == ["access.request", "access.expire"]


def test_a_grant_the_job_ends_late_is_reported_overdue(
    adb: AccessDb, alice: Person, approvers: list[Person], caplog: pytest.LogCaptureFixture
) -> None:
    row = granted(adb, alice, approvers, 5)
    # As if the job had been down for two minutes past the grant's end.
    with psycopg.connect(adb.superuser, autocommit=True) as conn:
        conn.execute(
            "UPDATE access.requests SET ends_at = now() - interval '2 minutes' WHERE id = %s",
            (row["id"],),
        )
    with caplog.at_level("WARNING", logger="rates_platform.access"):
        events = approvers[0].access.expire()
    assert [e["kind"] for e in events if e["request_id"] == row["id"]] == ["overdue"]
    assert any(
        r.getMessage().startswith(f"access.overdue request={row['id']} ") for r in caplog.records
    )
    assert not can_login(adb.grant_login(str(row["login_name"]), alice.pgpass))


def test_only_whole_scram_verifiers_are_accepted_never_a_password(
    adb: AccessDb, alice: Person
) -> None:
    with psycopg.connect(alice.conninfo, autocommit=True) as conn:
        for verifier in ("hunter2", "SCRAM-SHA-256$hunter2", None):
            with pytest.raises(AccessError, match="SCRAM-SHA-256 verifier"):
                queries.request(
                    conn,
                    "rates_reader",
                    5,
                    "a password is no verifier",
                    False,
                    verifier,  # type: ignore[arg-type]
                )
    assert all(r["requester"] != alice.name for r in alice.access.requests())  # none made


def test_approvers_can_be_a_named_group_and_a_policy_change_is_audited(
    adb: AccessDb, alice: Person, approvers: list[Person], tmp_path: Path
) -> None:
    admin = service(adb.admin, Path("/dev/null"))
    original = parse_policy(tomllib.loads(POLICY_FILE.read_text()))
    dba = add_person(adb, tmp_path, "dba", groups=("dba",))
    changed = {
        **original,
        "rates_reader": dataclasses.replace(original["rates_reader"], approver_groups=("dba",)),
    }
    try:
        assert admin.apply_policy(changed) == [
            "~ rates_reader.approver_groups: ['approvers'] -> ['dba']"
        ]
        row = alice.access.request("rates_reader", 5, "group approval", False)
        with pytest.raises(NotAllowed):
            approvers[0].access.approve(row["id"])  # the approver flag no longer counts
        assert dba.access.approve(row["id"])["status"] == "granted"
    finally:
        admin.apply_policy(original)
    with psycopg.connect(adb.superuser) as conn:
        diffs = conn.execute(
            "SELECT details -> 'diff' -> 'rates_reader' FROM audit.events "
            "WHERE event_type = 'policy.change' ORDER BY id DESC LIMIT 2"
        ).fetchall()
    assert [d[0]["after"]["approver_groups"] for d in diffs] == [["approvers"], ["dba"]]
