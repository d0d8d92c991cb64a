"""SIGKILL at random instants around `dbaccess access expire`: an expired grant is
never usable, whatever instant the job died at, and the next run finishes the job."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from rates_platform.dbaccess import audit
from tests.integration.access_support import (
    AccessDb,
    Person,
    access_server,
    add_person,
    can_login,
    events_for,
    prepare_access_db,
)

pytestmark = pytest.mark.e2e
ROUNDS = 8
GRANTS_PER_ROUND = 2
SEED = int(os.environ.get("ACCESS_KILL_SEED", "20261128"))


@pytest.fixture(scope="module", params=[16, 18])  # 16: Azure's version
def adb(request: pytest.FixtureRequest) -> Iterator[AccessDb]:
    with access_server(request.param) as server:
        yield prepare_access_db(server, request.param)


def job_env(adb: AccessDb, person: Person) -> dict[str, str]:
    person.pgpass.write_text(
        f"127.0.0.1:{adb.server.port}:{adb.db.name}:{person.name}:{person.password}\n"
    )
    person.pgpass.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    return env | {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(adb.server.port),
        "PGDATABASE": adb.db.name,
        "PGUSER": person.name,
        "PGPASSFILE": str(person.pgpass),
    }


def expire_job(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rates_platform.dbaccess.cli", "access", "expire"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for_session(adb: AccessDb, user: str, job: subprocess.Popen[bytes]) -> None:
    with psycopg.connect(adb.superuser, autocommit=True) as conn:
        deadline = time.monotonic() + 20
        while job.poll() is None and time.monotonic() < deadline:
            seen = conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE usename = %s", (user,)
            ).fetchone()
            if seen:
                return
            time.sleep(0.005)


def member_of_granted_role(adb: AccessDb, login: str) -> bool:
    with psycopg.connect(adb.superuser) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member "
            "JOIN pg_roles g ON g.oid = a.roleid "
            "WHERE m.rolname = %s AND g.rolname IN ('rates_reader', 'rates_operator')",
            (login,),
        ).fetchone()
    return row != (0,)


def session_alive(conn: psycopg.Connection[object]) -> bool:
    try:
        conn.execute("SELECT count(*) FROM ports").fetchone()
        return True
    except psycopg.Error:
        return False


def test_sigkill_around_the_expiry_job_never_leaves_an_expired_grant_usable(
    adb: AccessDb, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    print(f"kill loop seed {SEED} (ACCESS_KILL_SEED)")
    alice = add_person(adb, tmp_path, "alice")
    approver = add_person(adb, tmp_path, "appr", approver=True)
    env = job_env(adb, add_person(adb, tmp_path, "job"))
    outcomes: Counter[str] = Counter()
    full_run = 2.0  # seconds; measured below, so kills land across a whole run
    for _ in range(ROUNDS):
        grants, sessions = [], []
        for index in range(GRANTS_PER_ROUND):
            row = alice.access.request("rates_reader", 0.05, "kill loop", False)
            row = approver.access.approve(row["id"])
            login = adb.grant_login(row["login_name"], alice.pgpass)
            session = psycopg.connect(login, autocommit=True)
            if index % 2:
                session.execute("SET ROLE rates_reader")
            grants.append((row, login))
            sessions.append(session)
        last_end = max(row["ends_at"] for row, _ in grants)
        time.sleep(max(0.0, (last_end - datetime.now(UTC)).total_seconds()) + 0.2)

        for _kill in range(rng.choice((1, 2))):
            job = expire_job(env)
            if rng.random() < 0.5:  # anywhere in the run, start-up included
                time.sleep(rng.uniform(0.0, full_run))
            else:  # while it talks to PostgreSQL: within 60 ms of its connection showing
                wait_for_session(adb, env["PGUSER"], job)
                time.sleep(rng.uniform(0.0, 0.06))
            job.send_signal(signal.SIGKILL)
            job.wait(30)
            ended = {alice.access.show(row["id"])["status"] for row, _ in grants} == {"expired"}
            killed = job.returncode == -signal.SIGKILL
            outcomes[
                f"{'killed' if killed else 'finished'}, {'after' if ended else 'before'}"
                " the grants ended"
            ] += 1
            for _row, login in grants:  # the invariant at every instant: no new login
                assert not can_login(login)

        began = time.monotonic()
        job = expire_job(env)
        _, stderr = job.communicate(timeout=60)
        assert job.returncode == 0, stderr.decode()
        full_run = time.monotonic() - began

        for (row, login), session in zip(grants, sessions, strict=True):
            assert not session_alive(session)
            session.close()
            assert not can_login(login)
            assert not member_of_granted_role(adb, row["login_name"])
            assert alice.access.show(row["id"])["status"] == "expired"
            kinds = [kind for kind, _ in events_for(adb, row["id"])]
            assert kinds.count("access.expire") == 1, kinds
    with psycopg.connect(adb.superuser) as conn:
        assert audit.verify(conn).intact
    print(f"kill loop outcomes: {dict(outcomes)}")
    assert sum(n for outcome, n in outcomes.items() if outcome.startswith("killed")) >= ROUNDS
