"""What must hold after every completed rotation run, whatever crashed before it."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
from psycopg.conninfo import make_conninfo

from rates_platform.dbaccess import audit, rotation
from rates_platform.dbaccess.bootstrap import ROTATOR_LOGIN
from rates_platform.dbaccess.secrets import CURRENT, PENDING, PREVIOUS, LocalFileStore, with_stage

SECRET = "rates-db-app"  # noqa: S105 - the secret's name
STEP_EVENTS = {"rotation.create", "rotation.set", "rotation.test", "rotation.finish"}


def logs_in(server: str, username: str, password: str) -> bool:
    try:
        with psycopg.connect(
            make_conninfo(server, user=username, password=password), connect_timeout=5
        ) as conn:
            return conn.execute("SELECT count(*) FROM ports").fetchone() is not None
    except psycopg.OperationalError:
        return False


def current_logs_in(server: str, store: LocalFileStore) -> bool:
    """What the API reads (the newest current version) logs in."""
    current = with_stage(store, SECRET, CURRENT)
    return current is not None and logs_in(server, **current.value)


def assert_rotation_invariants(admin: str, server: str, store: LocalFileStore) -> None:
    """Exactly one current version, and it logs in; the store and pg_authid agree on its
    VALID UNTIL; no discarded password logs in; the audit chain verifies, with
    create/set/test/finish for the current version."""
    versions = store._load()[SECRET]
    currents = [v for v in versions if CURRENT in v["stages"]]
    assert len(currents) == 1, [v["stages"] for v in versions]
    current = currents[0]
    assert not [v for v in versions if PENDING in v["stages"]], "a rerun left a pending version"
    works = logs_in(server, **current["value"])
    assert works, "the current credential does not log in"
    with psycopg.connect(admin) as conn:
        (valid_until,) = conn.execute(
            "SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s",
            (current["value"]["username"],),
        ).fetchone()
        intended = datetime.fromisoformat(current["tags"]["valid_until"])
        assert valid_until is not None and abs(valid_until - intended) < timedelta(milliseconds=1)
        verification = audit.verify(conn)
        assert verification.intact, verification
        events = {
            event
            for (event,) in conn.execute(
                "SELECT event_type FROM audit.events WHERE details->>'version' = %s",
                (current["version_id"],),
            )
        }
    assert events >= STEP_EVENTS, events
    for version in versions:
        in_grace = PREVIOUS in version["stages"] and "retired" not in version["tags"]
        if version is current or in_grace:
            continue
        discarded_works = logs_in(server, **version["value"])
        assert not discarded_works, f"discarded version {version['version_id']} logs in"


def connects(server: str, username: str, password: str) -> bool:
    return rotation.logs_in(make_conninfo(server, user=username, password=password))


def assert_rotator_login_invariants(server: str, store: LocalFileStore) -> str:
    """After a completed run: the rotator's newest current password (what the next run
    uses) logs in, none is left pending, and no older one logs in. Returns its version."""
    versions = store._load()[ROTATOR_LOGIN]
    assert not [v for v in versions if PENDING in v["stages"]], "a rerun left it pending"
    current = with_stage(store, ROTATOR_LOGIN, CURRENT)
    assert current is not None
    assert connects(server, **current.value), "the rotator's own login does not log in"
    older = [v for v in versions if v["version_id"] != current.version_id]
    assert not [v for v in older if connects(server, **v["value"])], "an old password works"
    return current.version_id
