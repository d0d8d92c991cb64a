"""With no database, the API answers 503 problems quickly and stays alive."""

from __future__ import annotations

import time

from rates_platform.app import create_app
from tests.conftest import settings_for
from tests.support import free_port

QUERY = "/rates?date_from=2021-01-01&date_to=2021-01-02&orig_code=CNGGZ&dest_code=EETLL"


def test_no_database_means_503_with_retry_after() -> None:
    nowhere = f"host=127.0.0.1 port={free_port()} user=nobody dbname=none connect_timeout=1"
    client = create_app(settings_for(nowhere, pool_timeout=0.5, ready_timeout=0.5)).test_client()
    started = time.monotonic()
    response = client.get(QUERY)
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"].isdigit()
    assert response.json["type"].endswith(":database-unavailable")
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    # Validation still answers 400 without a database: bad input is never a 503.
    assert client.get("/rates?date_from=nope").status_code == 400
