"""Rotation with the real gunicorn server under load: not one request may fail."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.bootstrap import bootstrap
from rates_platform.dbaccess.rotation import RotationPolicy, Rotator
from rates_platform.dbaccess.secrets import LocalFileStore
from rates_platform.devdb import EmbeddedPostgres
from tests.support import ApiServer, Load, PreparedDatabase, prepare_database, start_server

pytestmark = pytest.mark.e2e
RATES = "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=china_main&dest_code=EETLL"
CLIENTS = 16
# Above the API pool's connection lifetime (1 s) plus its credential cache (0.2 s), as
# production must be; each rotation waits for the previous one's grace to end.
GRACE_SECONDS = 2


@pytest.fixture
def served(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[EmbeddedPostgres, PreparedDatabase, LocalFileStore, Rotator]]:
    """Migrated, loaded and bootstrapped by the Azure-shaped administrator; PostgreSQL
    18, or the version a test asks for (``indirect`` parameter)."""
    version = getattr(request, "param", "18")
    server = start_server(tmp_path, {"log_statement": "all"}, version=version)
    try:
        db = prepare_database(server, "rates")
        store = LocalFileStore(tmp_path / "secrets.enc")
        policy = RotationPolicy(grace=timedelta(seconds=GRACE_SECONDS))
        tcp = make_conninfo(host="127.0.0.1", port=server.port, dbname=db.name)
        yield server, db, store, bootstrap(db.migrator, store, tcp, policy)
    finally:
        server.stop()


def start_api(db: PreparedDatabase, store: LocalFileStore) -> ApiServer:
    # The pool recycles connections well inside the grace period, as in production.
    return ApiServer(
        make_conninfo(host="127.0.0.1", port=db.server.port, dbname=db.name),
        DB_SECRET_STORE=f"file:{store.path}",
        DB_CREDENTIAL_TTL="0.2",
        DB_POOL_MAX_LIFETIME="1",
        WEB_WORKERS="2",
    )


def slots_serving(db: PreparedDatabase) -> set[str]:
    with psycopg.connect(db.admin) as conn:
        return {
            u
            for (u,) in conn.execute(
                "SELECT usename FROM pg_stat_activity"
                " WHERE application_name = 'rates-api' AND usename IS NOT NULL"
            )
        }


@pytest.mark.parametrize("served", ["16"], indirect=True)  # Azure's server version
def test_twenty_rotations_under_sixteen_clients_fail_no_request(served) -> None:  # type: ignore[no-untyped-def]
    server, db, store, rotator = served
    with psycopg.connect(db.migrator) as conn:
        assert conn.info.server_version // 10000 == 16
    api = start_api(db, store)
    seen: set[str] = set()
    try:
        with Load(api.base, RATES, clients=CLIENTS) as load:
            time.sleep(1)
            for _ in range(20):
                assert rotator.run(force=True) == "rotated"
                time.sleep(0.4)
                seen |= slots_serving(db)
            time.sleep(GRACE_SECONDS + 1)
            rotator.run(force=False)  # retires the last previous slot, under load
            time.sleep(1)
        output = api.output()
    finally:
        api.stop()
    print(f"results: {dict(load.results)}; slots seen serving: {sorted(seen)}")
    assert set(load.results) == {"200"}, load.results
    assert load.results["200"] > 500
    assert {"rates_app_a", "rates_app_b"} <= seen
    for version in store._load()["rates-db-app"]:
        assert version["value"]["password"] not in output
        assert version["value"]["password"] not in server.log_file.read_text(errors="replace")
    with psycopg.connect(db.admin) as conn:
        assert audit.verify(conn).intact
        events = Counter(e for (e,) in conn.execute("SELECT event_type FROM audit.events"))
    assert events["rotation.finish"] >= 21 and events["rotation.retire"] >= 20
    assert events["api.start"] == 1 and events["api.stop"] == 1


CRASHING_ROTATION = """
import os, sys
from datetime import timedelta
from rates_platform.dbaccess.rotation import RotationPolicy, Rotator
from rates_platform.dbaccess.secrets import LocalFileStore
from pathlib import Path
store, conninfo, step = LocalFileStore(Path(sys.argv[1])), sys.argv[2], sys.argv[3]
def crash(reached):
    if reached == step:
        os._exit(70)  # the process dies: no cleanup, no exception handling
Rotator(store, conninfo, RotationPolicy(grace=timedelta(seconds=2)), on_step=crash).run(force=True)
"""


def test_crashes_at_every_step_are_resumed_while_the_api_serves(served) -> None:  # type: ignore[no-untyped-def]
    _server, db, store, rotator = served
    api = start_api(db, store)
    try:
        with Load(api.base, RATES, clients=CLIENTS) as load:
            for step in ("create", "set", "test", "finish"):
                before = rotator.status().active_slot
                crashed = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        CRASHING_ROTATION,
                        str(store.path),
                        rotator.conninfo,
                        step,
                    ],
                    env=os.environ,
                    check=False,
                    capture_output=True,
                )
                assert crashed.returncode == 70, crashed.stderr
                time.sleep(0.5)
                rotator.run(force=False)  # the scheduled rerun resumes it
                status = rotator.status()
                assert status.pending_step is None and status.active_slot != before
                time.sleep(0.5)
    finally:
        api.stop()
    assert set(load.results) == {"200"}, load.results
