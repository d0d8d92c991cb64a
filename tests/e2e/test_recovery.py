"""The real gunicorn server survives database restarts and outages without a restart."""

from __future__ import annotations

import time

import pytest

from rates_platform.devdb import EmbeddedPostgres
from tests.support import ApiServer, prepare_database

pytestmark = pytest.mark.e2e
RATES = "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=china_main&dest_code=EETLL"


def statuses_for(server: ApiServer, seconds: float) -> list[int]:
    deadline, seen = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        seen.append(server.get(RATES).status_code)
    return seen


def test_restart_of_the_database_is_invisible_after_seconds(own_server: EmbeddedPostgres) -> None:
    database = prepare_database(own_server, "rates")
    api = ApiServer(database.app)
    try:
        expected = api.get(RATES).json()
        own_server.restart()
        # Every request after the restart succeeds: dead pooled connections are retried.
        seen = statuses_for(api, 3)
        assert set(seen) == {200}, seen
        assert api.get(RATES).json() == expected
        assert api.process.poll() is None
    finally:
        api.stop()


def test_outage_gives_503_then_recovers_by_itself(own_server: EmbeddedPostgres) -> None:
    database = prepare_database(own_server, "rates")
    api = ApiServer(database.app, DB_POOL_TIMEOUT="0.5")
    try:
        pid = api.process.pid
        own_server.stop()
        down = api.get(RATES)
        assert down.status_code == 503
        assert down.headers["Content-Type"] == "application/problem+json"
        assert int(down.headers["Retry-After"]) > 0
        assert api.get("/readyz").status_code == 503
        assert api.get("/healthz").status_code == 200
        own_server.start()
        started = time.monotonic()
        api.wait_until(RATES, 200, within=15)
        recovery = time.monotonic() - started
        assert recovery < 15
        assert set(statuses_for(api, 1)) == {200}
        assert api.process.pid == pid and api.process.poll() is None
        print(f"recovered {recovery:.2f}s after the database came back")
    finally:
        api.stop()
