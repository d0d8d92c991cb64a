"""Credential rotation against a real server of its own (login roles are cluster-wide)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from rates_platform.dbaccess.bootstrap import ROTATOR_LOGIN, bootstrap
from rates_platform.dbaccess.cli import connection_from_env, write_metrics
from rates_platform.dbaccess.cli import main as dbaccess_main
from rates_platform.dbaccess.rotation import (
    ROTATION_LOCK,
    RotationBusy,
    RotationFailed,
    RotationPolicy,
    Rotator,
    login_conninfo,
    logs_in,
)
from rates_platform.dbaccess.secrets import (
    CURRENT,
    PENDING,
    PREVIOUS,
    LocalFileStore,
    SecretVersion,
    with_stage,
)
from rates_platform.devdb import EmbeddedPostgres
from tests.rotation_checks import assert_rotator_login_invariants
from tests.support import PreparedDatabase, prepare_database, start_server

SLOTS = {"rates_app_a", "rates_app_b"}
_copies = itertools.count(1)


class Crash(BaseException):
    """Stands for the process dying: nothing below catches it."""


@pytest.fixture(scope="module")
def rotation_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    # Every statement logged (to prove no password is), and a server TimeZone 14 hours
    # ahead of UTC (to prove expiry instants do not move).
    server = start_server(
        tmp_path_factory.mktemp("rotation"),
        {"log_statement": "all", "timezone": "Pacific/Kiritimati"},
    )
    prepare_database(server, "rotation_template")
    yield server
    server.stop()


@pytest.fixture
def db(rotation_server: EmbeddedPostgres) -> PreparedDatabase:
    return prepare_database(
        rotation_server, f"rotation_{next(_copies)}", template="rotation_template"
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path / "secrets.enc")


def server_of(db: PreparedDatabase) -> str:
    return make_conninfo(host="127.0.0.1", port=db.server.port, dbname=db.name)


def login(db: PreparedDatabase, store: LocalFileStore, stage: str = CURRENT) -> str:
    version = with_stage(store, "rates-db-app", stage)
    assert version is not None
    return make_conninfo(server_of(db), **version.login())


def can_read(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM prices").fetchone() == (56689,)
    except psycopg.OperationalError:
        return False


def test_bootstrap_gives_the_api_a_working_least_privileged_login(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    rotator = bootstrap(db.migrator, store, server_of(db), RotationPolicy())
    status = rotator.status()
    assert status.active_slot in SLOTS and status.pending_step is None
    assert can_read(login(db, store))
    with (
        psycopg.connect(login(db, store)) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("DELETE FROM prices")


def test_rotation_alternates_slots_and_the_previous_works_during_grace(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    rotator = bootstrap(db.migrator, store, server_of(db), RotationPolicy())
    first = rotator.status().active_slot
    assert rotator.run(force=True) == "rotated"
    assert rotator.status().active_slot == (SLOTS - {first}).pop()
    assert rotator.status().previous_slot == first
    assert can_read(login(db, store, PREVIOUS))
    assert rotator.run(force=False) == "not due"


def test_after_grace_the_previous_slot_is_retired_and_its_sessions_ended(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    policy = RotationPolicy(grace=timedelta(seconds=30))
    rotator = bootstrap(db.migrator, store, server_of(db), policy)
    rotator.run(force=True)
    old = login(db, store, PREVIOUS)
    session = psycopg.connect(old, autocommit=True)
    later = datetime.now(UTC) + timedelta(seconds=31)
    Rotator(store, rotator.conninfo, policy, clock=lambda: later).run(force=False)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    assert not can_read(old)
    assert can_read(login(db, store))


def test_twenty_rotations_leave_no_slot_owning_anything(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    # Each rotation waits for the previous one's grace: keep it short here.
    policy = RotationPolicy(grace=timedelta(seconds=0.2))
    rotator = bootstrap(db.migrator, store, server_of(db), policy)
    for _ in range(20):
        rotator.run(force=True)
    with psycopg.connect(db.admin) as conn:
        owned = conn.execute(
            "SELECT c.relname, r.rolname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE r.rolname = ANY(%s)",
            (sorted(SLOTS),),
        ).fetchall()
        owners = {
            o
            for (o,) in conn.execute(
                "SELECT DISTINCT r.rolname FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace JOIN pg_roles r ON r.oid = c.relowner"
                " WHERE n.nspname IN ('public', 'audit') AND c.relname NOT LIKE '%%yoyo%%'"
            )
        }
    assert owned == []
    assert owners == {"rates_owner"}
    assert can_read(login(db, store)) and can_read(login(db, store, PREVIOUS))


def test_a_failed_step_is_never_retried_with_the_same_password(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    rotator = bootstrap(db.migrator, store, server_of(db), RotationPolicy())
    before = with_stage(store, "rates-db-app", CURRENT)

    def fail_after_set(step: str) -> None:
        if step == "set":
            raise psycopg.OperationalError("the test step could not log in")

    failing = Rotator(store, rotator.conninfo, rotator.policy, on_step=fail_after_set)
    with pytest.raises(RotationFailed):
        failing.run(force=True)
    assert with_stage(store, "rates-db-app", PENDING) is None
    after = with_stage(store, "rates-db-app", CURRENT)
    assert before is not None and after is not None
    assert after.version_id == before.version_id  # nothing switched
    assert rotator.status().failed  # and status says so
    failed = next(v for v in store._load()["rates-db-app"] if v["tags"].get("step") == "failed")
    failed_password = failed["value"]["password"]
    failed_login = make_conninfo(
        server_of(db), user=failed["value"]["username"], password=failed_password
    )
    assert not can_read(failed_login)  # disabled at once, not left to work for 60 days
    rotator.run(force=True)
    assert not rotator.status().failed
    current = with_stage(store, "rates-db-app", CURRENT)
    assert current is not None and current.value["password"] != failed_password
    assert can_read(login(db, store))


@pytest.mark.parametrize("step", ["create", "set", "test", "finish"])
def test_a_crash_at_any_step_is_resumed_by_the_next_run(
    db: PreparedDatabase, store: LocalFileStore, step: str
) -> None:
    rotator = bootstrap(db.migrator, store, server_of(db), RotationPolicy())
    before = rotator.status().active_slot

    def crash(reached: str) -> None:
        if reached == step:
            raise Crash

    with pytest.raises(Crash):
        Rotator(store, rotator.conninfo, rotator.policy, on_step=crash).run(force=True)
    assert can_read(login(db, store))  # whatever happened, the current login works
    assert rotator.run(force=False) in {"rotated", "not due"}
    status = rotator.status()
    assert (status.active_slot, status.pending_step) == ((SLOTS - {before}).pop(), None)
    currents = [v for v in store.versions("rates-db-app") if CURRENT in v.stages]
    assert len(currents) == 1
    assert can_read(login(db, store))


def test_two_rotations_at_once_one_runs_the_other_says_so(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    rotator = bootstrap(db.migrator, store, server_of(db), RotationPolicy())
    inside = threading.Event()

    def linger(step: str) -> None:
        if step == "create":
            inside.set()
            time.sleep(1.5)

    outcome: list[object] = []
    slow = Rotator(store, rotator.conninfo, rotator.policy, on_step=linger)
    thread = threading.Thread(target=lambda: outcome.append(slow.run(force=True)))
    thread.start()
    assert inside.wait(10)
    with pytest.raises(RotationBusy, match="another rotation is running"):
        rotator.run(force=True)
    thread.join(30)
    assert outcome == ["rotated"]


def test_valid_until_is_the_intended_instant_whatever_the_server_timezone(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    policy = RotationPolicy(lifetime=timedelta(seconds=4))
    rotator = bootstrap(db.migrator, store, server_of(db), policy)
    version = with_stage(store, "rates-db-app", CURRENT)
    assert version is not None
    intended = datetime.fromisoformat(version.tags["valid_until"])
    with psycopg.connect(db.admin) as conn:
        assert conn.execute("SHOW TimeZone").fetchone() == ("Pacific/Kiritimati",)
        (valid_until,) = conn.execute(
            "SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (version.value["username"],)
        ).fetchone()
    assert abs(valid_until - intended) < timedelta(milliseconds=1)
    assert can_read(login(db, store))
    time.sleep(max(0.0, (intended - datetime.now(UTC)).total_seconds()) + 1)
    assert not can_read(login(db, store))  # expired at that instant, not 14 hours early
    assert rotator.status().active_slot in SLOTS


def test_a_host_clock_ahead_of_the_servers_still_rotates_within_the_lifetime(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    """The server bounds VALID UNTIL by its own clock (+ 1 minute): an expiry computed from
    a host clock a few minutes fast failed every rotation at `set`."""
    policy = RotationPolicy(grace=timedelta(seconds=0.5))
    rotator = bootstrap(db.migrator, store, server_of(db), policy)
    fast = Rotator(
        store,
        rotator.conninfo,
        rotator.policy,
        clock=lambda: datetime.now(UTC) + timedelta(minutes=5),
        own_login="rates-db-rotator",
    )
    fast.run(force=True)  # rotates the API's login (its own is not due)
    fast.run(force=True)
    version = with_stage(store, "rates-db-app", CURRENT)
    assert version is not None
    with psycopg.connect(db.admin) as conn:
        (valid_until, server_now) = conn.execute(
            "SELECT rolvaliduntil, now() FROM pg_roles WHERE rolname = %s",
            (version.value["username"],),
        ).fetchone()
    assert valid_until == datetime.fromisoformat(version.tags["valid_until"])
    assert valid_until <= server_now + rotator.policy.lifetime
    assert can_read(login(db, store))


def test_no_password_reaches_any_log_audit_row_or_error(
    db: PreparedDatabase, store: LocalFileStore, caplog: pytest.LogCaptureFixture
) -> None:
    rotator = bootstrap(db.migrator, store, server_of(db), RotationPolicy())
    errors = []
    for step in ("set", "test"):

        def fail(reached: str, step: str = step) -> None:
            if reached == step:
                raise psycopg.OperationalError("injected failure")

        try:
            Rotator(store, rotator.conninfo, rotator.policy, on_step=fail).run(force=True)
        except RotationFailed as exc:
            errors.append(f"{exc!r} {exc.__cause__!r} {exc.__context__!r}")
    rotator.run(force=True)
    passwords = [v["value"]["password"] for vs in store._load().values() for v in vs]
    assert len(passwords) >= 5
    with psycopg.connect(db.admin) as conn:
        audit_text = conn.execute(
            "SELECT string_agg(e::text, '\n') FROM audit.events e"
        ).fetchone()[0]
    server_log = db.server.log_file.read_text(errors="replace")
    assert "ALTER ROLE" in server_log  # log_statement=all did log the statements
    for password in passwords:
        for where, text in (
            ("server log", server_log),
            ("audit", audit_text),
            ("errors", "\n".join(errors)),
            ("app log", caplog.text),
        ):
            assert password not in text, where


def test_the_bootstrap_command_sets_up_access_from_an_administrator_login(
    db: PreparedDatabase, store: LocalFileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db.migrator)  # the Azure-shaped administrator
    monkeypatch.setenv("DB_SECRET_STORE", f"file:{store.path}")
    assert dbaccess_main(["bootstrap"]) == 0
    assert can_read(login(db, store))
    current = with_stage(store, "rates-db-app", CURRENT)
    assert current is not None and current.value["username"] in SLOTS
    assert dbaccess_main(["bootstrap"]) == 0  # a rerun changes nothing that works
    assert with_stage(store, "rates-db-app", CURRENT) == current


def test_the_rotate_command_exports_metrics_and_exit_codes(
    db: PreparedDatabase,
    store: LocalFileStore,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rotator = bootstrap(db.migrator, store, server_of(db), RotationPolicy())
    monkeypatch.setenv("DATABASE_URL", server_of(db))
    monkeypatch.setenv("DB_SECRET_STORE", f"file:{store.path}")
    monkeypatch.setenv("DBACCESS_LOGIN", "rates-db-rotator")
    metrics = tmp_path / "dbaccess.prom"
    assert dbaccess_main(["rotate", "--now", "--metrics-file", str(metrics)]) == 0
    text = metrics.read_text()
    assert 'dbaccess_rotation_last_run_timestamp_seconds{outcome="success"}' in text
    assert "dbaccess_credential_age_seconds" in text and "dbaccess_rotation_stuck 0.0" in text
    assert dbaccess_main(["rotate", "--if-due"]) == 0
    assert "not due" in capsys.readouterr().out
    with psycopg.connect(rotator.conninfo) as holder:
        holder.execute(ROTATION_LOCK)
        assert dbaccess_main(["rotate", "--now", "--metrics-file", str(metrics)]) == 3
    assert "another rotation is running" in capsys.readouterr().err
    assert 'outcome="busy"' in metrics.read_text()


def test_the_rotator_can_manage_the_slots_but_not_act_as_them(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    rotator = bootstrap(db.migrator, store, server_of(db), RotationPolicy())
    with psycopg.connect(rotator.conninfo, autocommit=True) as conn:
        flags = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert flags == (False, False, False)  # no CREATEROLE: see test_rotation_privileges
        for statement in (
            "SELECT count(*) FROM prices",
            "SET ROLE rates_app_a",
            "SET ROLE rates_owner",
            "DELETE FROM audit.events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


class CrashOnFinishLabel:
    """A store that dies when the finish step labels the new version current."""

    def __init__(self, store: LocalFileStore) -> None:
        self.store = store

    def versions(self, name: str) -> list[SecretVersion]:
        return self.store.versions(name)

    def add_version(
        self, name: str, value: Mapping[str, str], stages: set[str], tags: Mapping[str, str]
    ) -> SecretVersion:
        return self.store.add_version(name, value, stages, tags)

    def update(self, name: str, version_id: str, stages: set[str], tags: Mapping[str, str]) -> None:
        if CURRENT in stages and tags.get("step") == "finish":
            raise Crash
        self.store.update(name, version_id, stages, tags)


def test_a_rotation_dying_inside_the_grace_never_makes_a_disabled_login_current(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    """The review's sequence: rotation 1 finishes; rotation 2 starts inside the grace
    and dies after `test`, before `finish`; the next run comes after the grace."""
    policy = RotationPolicy(grace=timedelta(seconds=2))
    rotator = bootstrap(db.migrator, store, server_of(db), policy)
    assert rotator.run(force=True) == "rotated"  # rotation 1
    with pytest.raises(Crash):  # rotation 2, inside the grace
        Rotator(CrashOnFinishLabel(store), rotator.conninfo, policy).run(force=True)
    time.sleep(2.2)  # the next run comes after the grace
    assert rotator.run(force=False) in {"rotated", "not due"}
    status = rotator.status()
    assert status.pending_step is None and not status.stuck
    currents = [v for v in store.versions("rates-db-app") if CURRENT in v.stages]
    assert len(currents) == 1
    works = can_read(login(db, store))
    assert works, "the current credential cannot log in"
    time.sleep(2.2)  # and after the next grace, still one working login
    rotator.run(force=False)
    assert can_read(login(db, store))


def test_a_lost_store_is_recovered_and_the_passwords_it_held_stop_working(
    db: PreparedDatabase, store: LocalFileStore, tmp_path: Path
) -> None:
    rotator = bootstrap(db.migrator, store, server_of(db), RotationPolicy())
    rotator.run(force=True)  # a current and a previous in its grace, both logging in
    lost = [login(db, store), login(db, store, PREVIOUS)]
    assert all(can_read(conninfo) for conninfo in lost)
    replacement = LocalFileStore(tmp_path / "new" / "secrets.enc")  # the store is gone
    bootstrap(db.migrator, replacement, server_of(db), RotationPolicy())
    assert can_read(login(db, replacement))
    assert not any(can_read(conninfo) for conninfo in lost)
    with psycopg.connect(db.admin) as conn:
        untracked = conn.execute(
            "SELECT count(*) FROM audit.events"
            " WHERE event_type = 'role.change' AND details->>'reason' = 'untracked'"
        ).fetchone()
    assert untracked is not None and untracked[0] >= 1


def test_status_exits_4_and_the_metric_says_failed_after_a_failed_step(
    db: PreparedDatabase,
    store: LocalFileStore,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rotator = bootstrap(db.migrator, store, server_of(db), RotationPolicy())
    monkeypatch.setenv("DB_SECRET_STORE", f"file:{store.path}")
    assert dbaccess_main(["status"]) == 0

    def fail(step: str) -> None:
        if step == "set":
            raise psycopg.OperationalError("injected failure")

    with pytest.raises(RotationFailed):
        Rotator(store, rotator.conninfo, rotator.policy, on_step=fail).run(force=True)
    assert dbaccess_main(["status"]) == 4
    assert "the last rotation failed" in capsys.readouterr().out
    metrics = tmp_path / "dbaccess.prom"
    write_metrics(metrics, rotator.status(), None)
    assert "dbaccess_rotation_failed 1.0" in metrics.read_text()
    rotator.run(force=True)
    assert dbaccess_main(["status"]) == 0


def test_the_rotator_rotates_its_own_login_and_survives_a_crash_half_way(
    db: PreparedDatabase, store: LocalFileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = RotationPolicy(period=timedelta(seconds=1), grace=timedelta(seconds=0.2))
    rotator = bootstrap(db.migrator, store, server_of(db), policy)
    old = with_stage(store, "rates-db-rotator", CURRENT)
    assert old is not None
    time.sleep(1.1)  # its login is now as old as the period

    def crash(step: str) -> None:
        if step == "own-login":  # the server has the new password, the store not yet
            raise Crash

    with pytest.raises(Crash):
        Rotator(store, rotator.conninfo, policy, on_step=crash, own_login="rates-db-rotator").run(
            force=False
        )
    pending = with_stage(store, "rates-db-rotator", PENDING)
    assert pending is not None
    assert not logs_in(make_conninfo(server_of(db), **old.login()))
    monkeypatch.setenv("DATABASE_URL", server_of(db))
    monkeypatch.setenv("DB_SECRET_STORE", f"file:{store.path}")
    monkeypatch.setenv("DBACCESS_LOGIN", "rates-db-rotator")
    monkeypatch.setenv("ROTATION_PERIOD_DAYS", str(1 / 86400))
    monkeypatch.setenv("ROTATION_GRACE_SECONDS", "0.2")
    monkeypatch.setenv("DB_POOL_MAX_LIFETIME", "0.1")
    monkeypatch.setenv("DB_CREDENTIAL_TTL", "0.05")
    assert dbaccess_main(["rotate", "--if-due"]) == 0  # logs in with the pending version
    current = with_stage(store, "rates-db-rotator", CURRENT)
    assert current is not None and current.version_id == pending.version_id
    assert with_stage(store, "rates-db-rotator", PENDING) is None
    assert logs_in(make_conninfo(server_of(db), **current.login()))
    with psycopg.connect(db.admin) as conn:
        (valid_until,) = conn.execute(
            "SELECT rolvaliduntil FROM pg_roles WHERE rolname = 'rates_rotator'"
        ).fetchone()
        changes = conn.execute(
            "SELECT count(*) FROM audit.events WHERE event_type = 'role.change'"
            " AND target = 'rates_rotator' AND actor = 'rates_rotator'"
        ).fetchone()
    intended = datetime.fromisoformat(current.tags["valid_until"])
    assert abs(valid_until - intended) < timedelta(milliseconds=1)
    assert changes is not None and changes[0] >= 2  # the crashed run's and the rerun's


def test_a_second_rotation_inside_a_long_grace_is_deferred_not_cut_short(
    db: PreparedDatabase,
    store: LocalFileStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bootstrap(db.migrator, store, server_of(db), RotationPolicy())
    monkeypatch.setenv("DATABASE_URL", server_of(db))
    monkeypatch.setenv("DB_SECRET_STORE", f"file:{store.path}")
    monkeypatch.setenv("DBACCESS_LOGIN", "rates-db-rotator")
    assert dbaccess_main(["rotate", "--now"]) == 0
    before = [(v.version_id, v.stages) for v in store.versions("rates-db-app")]
    assert dbaccess_main(["rotate", "--now", "--max-wait", "5"]) == 3  # grace: 3600 s
    assert "keeps its grace until" in capsys.readouterr().err
    assert [(v.version_id, v.stages) for v in store.versions("rates-db-app")] == before
    assert can_read(login(db, store, PREVIOUS))  # the previous credential still works


def test_a_second_rotation_keeps_the_first_ones_full_grace(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    policy = RotationPolicy(grace=timedelta(seconds=2))
    rotator = bootstrap(db.migrator, store, server_of(db), policy)
    rotator.run(force=True)
    previous = login(db, store, PREVIOUS)
    retire_after = rotator.status().previous_retire_after
    assert retire_after is not None
    second = threading.Thread(target=lambda: rotator.run(force=True))
    second.start()
    polls = []
    while second.is_alive():
        polls.append((datetime.now(UTC), can_read(previous)))
        time.sleep(0.1)
    second.join()
    inside = [works for at, works in polls if at < retire_after - timedelta(milliseconds=200)]
    assert len(inside) >= 5 and all(inside)  # it kept working until its grace ended
    assert datetime.now(UTC) >= retire_after  # the second rotation waited for it
    assert not can_read(previous)  # then it was retired
    assert can_read(login(db, store))


def test_a_run_dying_once_the_rotators_own_password_changed_leaves_it_able_to_log_in(
    db: PreparedDatabase, store: LocalFileStore
) -> None:
    """The one-slot window: the server has the new password, the store still calls it
    pending. The command's way in (the pending version) works, and the rerun finishes."""
    policy = RotationPolicy()
    bootstrap(db.migrator, store, server_of(db), policy)
    env = {"DATABASE_URL": server_of(db), "DBACCESS_LOGIN": ROTATOR_LOGIN}
    now = [datetime.now(UTC) + policy.period + timedelta(minutes=1)]

    def advance(seconds: float) -> None:  # a grace waited out on this clock, not the wall's
        now[0] += timedelta(seconds=seconds)

    before = with_stage(store, ROTATOR_LOGIN, CURRENT)

    def crash(step: str) -> None:
        if step == "own-login":
            raise Crash

    dying = Rotator(
        store,
        connection_from_env(env, store),
        policy,
        clock=lambda: now[0],
        on_step=crash,
        sleep=advance,
        own_login=ROTATOR_LOGIN,
    )
    with pytest.raises(Crash):
        dying.run(force=False)
    assert before is not None and not logs_in(login_conninfo(server_of(db), before.login()))
    conninfo = connection_from_env(env, store)  # falls back to the pending version
    assert logs_in(conninfo)
    rerun = Rotator(
        store, conninfo, policy, clock=lambda: now[0], sleep=advance, own_login=ROTATOR_LOGIN
    )
    assert rerun.run(force=False).endswith("rotated its own login")
    assert_rotator_login_invariants(server_of(db), store)
