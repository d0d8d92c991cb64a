"""The HTTP contract of /rates and the operational routes, on the real sample data."""

from __future__ import annotations

import prometheus_client
import pytest
from flask.testing import FlaskClient

from rates_platform.app import create_app
from tests.conftest import settings_for

EXAMPLE = "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=EETLL"
PROBLEM = "application/problem+json"


def test_hello(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.json == {"message": "Hello world!"}


def test_documented_example(client: FlaskClient) -> None:
    response = client.get(EXAMPLE)
    assert response.status_code == 200
    rates = response.json["rates"]
    assert len(rates) == 31
    assert [r["day"] for r in rates][:2] == ["2021-01-31", "2021-01-30"]
    assert rates[-1]["day"] == "2021-01-01"
    assert all(r["count"] == 3 for r in rates)
    assert rates[0] == {"day": "2021-01-31", "price": 1154.3333333333333, "count": 3}


def test_aliases_give_the_same_answer(client: FlaskClient) -> None:
    aliased = EXAMPLE.replace("orig_code", "origin").replace("dest_code", "destination")
    assert client.get(aliased).json == client.get(EXAMPLE).json


def test_days_without_prices_count_zero(client: FlaskClient) -> None:
    response = client.get(
        "/rates?date_from=2020-12-30&date_to=2021-01-01&orig_code=CNGGZ&dest_code=EETLL"
    )
    first, *before = response.json["rates"]
    assert (first["day"], first["count"]) == ("2021-01-01", 3)
    assert first["price"] is not None
    assert before == [
        {"day": "2020-12-31", "price": None, "count": 0},
        {"day": "2020-12-30", "price": None, "count": 0},
    ]


@pytest.mark.parametrize(
    ("query", "problem_type", "parameter"),
    [
        ("date_to=2021-01-31&orig_code=CNGGZ&dest_code=EETLL", "missing-parameter", "date_from"),
        (
            "date_from=2021-01-01&date_to=2021-13-01&orig_code=CNGGZ&dest_code=EETLL",
            "invalid-date",
            "date_to",
        ),
        (
            "date_from=2021-02-01&date_to=2021-01-01&orig_code=CNGGZ&dest_code=EETLL",
            "invalid-date-range",
            "date_from",
        ),
        (
            "date_from=2021-01-01&date_to=9999-12-31&orig_code=CNGGZ&dest_code=EETLL",
            "date-range-too-long",
            "date_to",
        ),
        (
            "date_from=2021-01-01&date_to=2021-01-31&orig_code=ZZZZZ&dest_code=EETLL",
            "unknown-location",
            "orig_code",
        ),
        (
            "date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=atlantis",
            "unknown-location",
            "dest_code",
        ),
        (
            "date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=%3Bdrop",
            "invalid-parameter",
            "dest_code",
        ),
    ],
)
def test_bad_input_is_a_400_problem(
    client: FlaskClient, query: str, problem_type: str, parameter: str
) -> None:
    response = client.get(f"/rates?{query}")
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["type"] == f"urn:rates-platform:problem:{problem_type}"
    assert body["status"] == 400
    assert body["parameter"] == parameter
    assert body["invalid_params"][0]["name"] == parameter
    assert body["detail"]
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_range_limit_is_configurable(sample_db) -> None:  # type: ignore[no-untyped-def]
    app = create_app(settings_for(sample_db.app, max_range_days=7))
    response = app.test_client().get(EXAMPLE)
    assert response.status_code == 400
    assert "at most 7" in response.json["detail"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/no/such/route", 404), ("POST", "/rates", 405), ("DELETE", "/", 405)],
)
def test_routing_errors_are_problems(
    client: FlaskClient, method: str, path: str, status: int
) -> None:
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    assert b"<html" not in response.data.lower()
    if status == 405:
        assert "GET" in response.headers["Allow"]


def test_unexpected_errors_are_problems_without_a_trace(sample_db) -> None:  # type: ignore[no-untyped-def]
    app = create_app(settings_for(sample_db.app))

    @app.get("/__boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    response = app.test_client().get("/__boom")
    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    assert b"secret internals" not in response.data
    assert b"Traceback" not in response.data


def test_request_id_is_echoed_or_generated(client: FlaskClient) -> None:
    assert client.get("/", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == (
        "abc-123"
    )
    generated = client.get("/", headers={"X-Request-ID": "bad id; forged=1"}).headers[
        "X-Request-ID"
    ]
    assert generated != "bad id; forged=1"
    assert len(generated) == 32


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ready"}


def test_metrics_count_requests_by_route_and_status(client: FlaskClient) -> None:
    client.get(EXAMPLE)
    # The app itself does not serve them (the server's internal listener does).
    assert client.get("/metrics").status_code == 404
    text = prometheus_client.generate_latest().decode()
    assert 'http_requests_total{method="GET",route="/rates",status="200"}' in text
    assert "http_request_duration_seconds_bucket" in text
    assert "db_pool_connections" in text


def test_docs_page_and_assets(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert b"swagger-ui" in page.data
    assert client.get("/docs/swagger-ui-bundle.js").status_code == 200
