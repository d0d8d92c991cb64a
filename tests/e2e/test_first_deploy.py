"""A first deploy: the API starts before its credential exists and must wait, not exit.

In Azure the API's first revision can start before the access job has created its
login, and before its Key Vault role has propagated (Key Vault answers 403). The API
must stay alive, answer /healthz, report not ready, and become ready by itself once
the credential is there: no restart.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from rates_platform.dbaccess.bootstrap import bootstrap
from rates_platform.dbaccess.rotation import RotationPolicy
from rates_platform.dbaccess.secrets import LocalFileStore
from tests.support import ApiServer, PreparedDatabase

pytestmark = pytest.mark.e2e
RATES = "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=EETLL"


def stays_alive_and_not_ready(api: ApiServer, pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert api.process.poll() is None, api.output()
        assert api.get("/healthz").status_code == 200
        ready = api.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.headers["Content-Type"] == "application/problem+json"
        assert api.get(RATES).status_code == 503
        time.sleep(0.2)
    assert api.process.pid == pid


def test_api_waits_for_its_credential_then_serves_without_a_restart(
    fresh_db: PreparedDatabase, tmp_path: Path
) -> None:
    store_path = tmp_path / "secrets.enc"
    # 1. The store cannot be read (as Key Vault answers 403 before the role propagates).
    store_path.write_bytes(b"not a store")
    store_path.with_name("secrets.enc.key").write_bytes(b"bm90IGEga2V5" * 4)
    server = make_conninfo(host="127.0.0.1", port=fresh_db.server.port, dbname=fresh_db.name)
    api = ApiServer(
        server,
        ready=False,
        DB_SECRET_STORE=f"file:{store_path}",
        DB_CREDENTIAL_TTL="0.2",
        DB_POOL_TIMEOUT="1",
    )
    try:
        pid = api.process.pid
        stays_alive_and_not_ready(api, pid, 3)
        # 2. The store is readable but holds no credential yet (the access job has not run).
        store_path.unlink()
        store_path.with_name("secrets.enc.key").unlink()
        stays_alive_and_not_ready(api, pid, 3)
        # 3. The access job runs: the API becomes ready by itself.
        bootstrap(
            fresh_db.migrator,
            LocalFileStore(store_path),
            server,
            RotationPolicy(grace=timedelta(seconds=30)),
        )
        api.wait_until("/readyz", 200, within=20)
        assert api.get(RATES).status_code == 200
        assert api.process.pid == pid and api.process.poll() is None
    finally:
        api.stop()
    assert "password" not in api.output().lower(), api.output()
