"""Property test of the rotation state machine: crash points x timings x reruns.

Hypothesis draws a few runs, each forced or not, each after some time has passed (a
fake clock; waiting for a grace advances it) and each dying at one of the points where
a crash hurts most (after a step's effect, before it is recorded). After every run the
current credential must log in; after a rerun that completes, every invariant of
tests.rotation_checks must hold. Derandomised: the same examples on every run.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from rates_platform.dbaccess.bootstrap import bootstrap
from rates_platform.dbaccess.rotation import RotationPolicy, Rotator
from rates_platform.dbaccess.secrets import LocalFileStore
from rates_platform.devdb import EmbeddedPostgres
from tests.rotation_checks import assert_rotation_invariants, current_logs_in
from tests.support import prepare_database, start_server

GRACE = timedelta(seconds=3)
CRASH_POINTS = (None, "create", "set", "test", "finish", "retire")
_copies = itertools.count(1)


class Crash(BaseException):
    """The process dies: nothing in the rotator catches it."""


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = start_server(tmp_path_factory.mktemp("model"))
    prepare_database(server, "model_template")
    yield server
    server.stop()


run_strategy = st.tuples(
    st.sampled_from(CRASH_POINTS),  # where this run dies (None: it does not)
    st.floats(min_value=0, max_value=2 * GRACE.total_seconds()),  # time before it
    st.booleans(),  # --now or --if-due
)


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(runs=st.lists(run_strategy, min_size=1, max_size=4))
def test_no_crash_sequence_leaves_the_api_without_a_working_login(
    model_server: EmbeddedPostgres,
    tmp_path_factory: pytest.TempPathFactory,
    runs: list[tuple[str | None, float, bool]],
) -> None:
    db = prepare_database(model_server, f"model_{next(_copies)}", template="model_template")
    store = LocalFileStore(tmp_path_factory.mktemp("store") / "secrets.enc")
    server = make_conninfo(host="127.0.0.1", port=model_server.port, dbname=db.name)
    now = [datetime.now(UTC)]

    def advance(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)

    policy = RotationPolicy(grace=GRACE)
    conninfo = bootstrap(db.migrator, store, server, policy).conninfo
    for crash_at, wait, force in runs:
        advance(wait)

        def crash(step: str, crash_at: str | None = crash_at) -> None:
            if step == crash_at:
                raise Crash

        rotator = Rotator(
            store, conninfo, policy, clock=lambda: now[0], on_step=crash, sleep=advance
        )
        with contextlib.suppress(Crash):
            rotator.run(force=force)
        works = current_logs_in(server, store)
        assert works, f"after {runs}: the current credential does not log in"
        if crash_at is None:
            assert_rotation_invariants(db.admin, server, store)
    advance(GRACE.total_seconds() + 0.5)  # the rerun after the grace completes it all
    rerun = Rotator(store, conninfo, policy, clock=lambda: now[0], sleep=advance)
    assert rerun.run(force=False) in {
        "rotated",
        "not due",
        "retired an expired slot; rotation not due",
    }
    assert_rotation_invariants(db.admin, server, store)
    status = rerun.status()
    assert not (status.stuck or status.failed)
