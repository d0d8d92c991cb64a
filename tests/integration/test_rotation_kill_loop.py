"""`dbaccess rotate --now` killed with SIGKILL at random instants, as real processes.

Each round: two runs back to back (the second inside the first's grace), each killed at
a random instant (or finishing first), then a rerun after the grace that must complete
and leave every invariant of tests.rotation_checks. The rotation period is short enough
that the runs also change the rotator's own password (one slot, no grace), so the kills
land in that too. The seed is printed; set KILL_LOOP_SEED to replay a run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from rates_platform.dbaccess.bootstrap import bootstrap
from rates_platform.dbaccess.rotation import RotationPolicy
from rates_platform.dbaccess.secrets import LocalFileStore
from tests.rotation_checks import assert_rotation_invariants, assert_rotator_login_invariants
from tests.support import PreparedDatabase, prepare_database, start_server

ROUNDS = 10  # 3 runs each: 30 `rotate --now` processes
GRACE_SECONDS = 1.0
OWN_LOGIN_PERIOD_SECONDS = 1.5


@pytest.fixture(params=["16", "18"])  # 16: Azure's version
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PreparedDatabase]:
    server = start_server(tmp_path / "pg", version=request.param)
    try:
        yield prepare_database(server, "rates")
    finally:
        server.stop()


def test_sigkilled_rotations_always_leave_a_working_current_credential(
    db: PreparedDatabase, tmp_path: Path
) -> None:
    seed = int(os.environ.get("KILL_LOOP_SEED") or random.SystemRandom().randrange(2**32))
    print(f"kill loop seed: {seed} (KILL_LOOP_SEED={seed} replays it)")
    chance = random.Random(seed)
    store = LocalFileStore(tmp_path / "secrets.enc")
    server = make_conninfo(host="127.0.0.1", port=db.server.port, dbname=db.name)

    bootstrap(db.migrator, store, server, RotationPolicy(grace=timedelta(seconds=GRACE_SECONDS)))
    env = {
        **os.environ,
        "DATABASE_URL": server,
        "DB_SECRET_STORE": f"file:{store.path}",
        "DBACCESS_LOGIN": "rates-db-rotator",
        "ROTATION_GRACE_SECONDS": str(GRACE_SECONDS),
        # The rotator's own login is due again after this long (the API's is forced).
        "ROTATION_PERIOD_DAYS": str(OWN_LOGIN_PERIOD_SECONDS / 86400),
        "DB_POOL_MAX_LIFETIME": "0.5",
        "DB_CREDENTIAL_TTL": "0.2",
    }
    command = [sys.executable, "-m", "rates_platform.dbaccess.cli", "rotate", "--now"]
    # Kill instants are drawn over the span of a whole run as measured on this machine
    # now: fixed seconds would miss every run on a fast one and kill too early on a slow one.
    started = time.monotonic()
    subprocess.run(command, env=env, capture_output=True, check=True)
    span = time.monotonic() - started
    killed = 0
    own_logins: set[str] = set()
    for round_no in range(ROUNDS):
        for _pair in range(2):  # the second starts inside the first one's grace
            run = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            try:
                run.wait(timeout=chance.uniform(0.1, 1.5) * span)  # some finish
            except subprocess.TimeoutExpired:
                run.send_signal(signal.SIGKILL)
                run.wait()
                killed += 1
            assert run.returncode in (0, 3, -signal.SIGKILL), run.stderr.read()  # type: ignore[union-attr]
        time.sleep(GRACE_SECONDS + 0.1)
        for _attempt in range(20):  # a killed run's session may hold the lock a moment
            rerun = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if rerun.returncode != 3:
                break
            time.sleep(0.2)
        assert rerun.returncode == 0, f"round {round_no}: {rerun.stderr}"
        assert_rotation_invariants(db.admin, server, store)
        own_logins.add(assert_rotator_login_invariants(server, store))
    print(f"{killed} of {2 * ROUNDS} runs were killed; {len(own_logins)} rotator passwords")
    assert killed >= ROUNDS // 2  # the loop did kill, not just wait
    assert len(own_logins) >= ROUNDS // 2  # and the rotator's own password did change
