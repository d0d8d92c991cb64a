"""The edge serves /rates in front of Flask: it must answer exactly as Flask's routes do."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from rates_platform.app import create_app
from rates_platform.http.edge import Edge, Route
from rates_platform.http.observability import Recorder
from rates_platform.http.protection import Guard
from tests.conftest import settings_for

EXAMPLE = "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=EETLL"


def _without_instance(response: TestResponse) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and problem body, less what names the request and its path."""
    assert response.headers["Content-Length"] == str(len(response.data))
    headers = {
        k: v for k, v in response.headers.items() if k not in {"X-Request-ID", "Content-Length"}
    }
    if "Allow" in headers:  # Flask lists a set: its order differs between processes
        headers["Allow"] = ", ".join(sorted(headers["Allow"].split(", ")))
    body = {k: v for k, v in response.json.items() if k not in {"instance", "request_id"}}
    return response.status_code, headers, body


@pytest.mark.parametrize(
    ("method", "query"),
    [("POST", ""), ("DELETE", ""), ("GET", "?x=" + "a" * 5_000), ("PUT", "?x=" + "a" * 5_000)],
)
def test_the_edge_refuses_as_flask_does(client: FlaskClient, method: str, query: str) -> None:
    """/healthz is Flask's and allows the same methods as /rates: the same refusal."""
    ours = client.open("/rates" + query, method=method)
    flasks = client.open("/healthz" + query, method=method)
    assert ours.status_code in {405, 414}
    assert _without_instance(ours) == _without_instance(flasks)
    assert ours.json["instance"] == "/rates"
    assert ours.json["request_id"] == ours.headers["X-Request-ID"]


def test_head_has_get_s_headers_and_no_body(client: FlaskClient) -> None:
    get, head = client.get(EXAMPLE), client.head(EXAMPLE)
    assert head.status_code == get.status_code == 200
    assert head.data == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"] == str(len(get.data))
    assert head.headers["Content-Type"] == get.headers["Content-Type"] == "application/json"


def test_options_lists_the_methods_without_a_body(client: FlaskClient) -> None:
    response = client.options("/rates")
    assert response.status_code == 200
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert response.data == b""
    assert "Content-Type" not in response.headers


def test_repeated_parameters_take_the_first_value_as_flask_did(client: FlaskClient) -> None:
    first = client.get(EXAMPLE + "&orig_code=nowhere")
    assert first.status_code == 200
    assert first.json == client.get(EXAMPLE).json


def test_each_rates_request_is_counted_and_logged_once(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="rates_platform.access"):
        response = client.get(EXAMPLE, headers={"X-Request-ID": "edge-test-1"})
    lines = [r for r in caplog.records if getattr(r, "request_id", None) == "edge-test-1"]
    assert response.status_code == 200
    assert len(lines) == 1
    line = lines[0]
    assert (line.method, line.route, line.path, line.status) == ("GET", "/rates", "/rates", 200)  # type: ignore[attr-defined]
    assert line.duration_ms > 0  # type: ignore[attr-defined]


def test_an_unexpected_error_is_a_problem_without_its_message(
    sample_db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(sample_db.app)
    app: Flask = create_app(settings)
    database = app.extensions["database"]

    def boom(params: object) -> bytes:
        raise RuntimeError("secret internals")

    app.wsgi_app = Edge(  # type: ignore[method-assign]
        app.wsgi_app,
        [Route("/boom", "boom", boom)],
        Recorder(database.pool),
        Guard(settings, database),
    )
    with caplog.at_level(logging.ERROR, logger="rates_platform.errors"):
        response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert b"secret internals" not in response.data
    assert response.json["type"] == "urn:rates-platform:problem:internal-error"
    assert next(r.exc_info[1] for r in caplog.records if r.exc_info).args == ("secret internals",)  # type: ignore[index]
    assert app.test_client().get(EXAMPLE).status_code == 200  # the inner edge still serves


@pytest.mark.parametrize("method", ["get", "Get", "head", "options"])
def test_a_method_in_any_case_is_served_as_flask_did(client: FlaskClient, method: str) -> None:
    """Werkzeug upper-cases the method, and granian passes it as the client wrote it."""
    ours = client.open(EXAMPLE, method=method)
    expected = client.open(EXAMPLE, method=method.upper())
    assert ours.status_code == expected.status_code == 200
    # Only HEAD as sent has no body (werkzeug's check): "head" got the body through Flask.
    assert ours.data == (b"" if method == "options" else client.get(EXAMPLE).data)


@pytest.mark.parametrize("path", ["//rates", "///rates"])
def test_leading_slashes_are_served_as_flask_did(client: FlaskClient, path: str) -> None:
    """A base URL with a trailing slash makes "//rates"; werkzeug reads it as /rates."""
    ours = client.get(EXAMPLE, environ_overrides={"PATH_INFO": path})  # as granian passes it
    assert ours.status_code == 200
    assert ours.data == client.get(EXAMPLE).data


@pytest.mark.parametrize(
    ("method", "query", "route"),
    [
        ("POST", "", "<unmatched>"),
        ("JUNK", "", "<unmatched>"),
        ("PUT", "?x=" + "a" * 5_000, "<unmatched>"),
        ("GET", "?x=" + "a" * 5_000, "/rates"),
        ("OPTIONS", "", "/rates"),
    ],
)
def test_a_method_the_route_lacks_is_counted_unmatched_as_flask_did(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, method: str, query: str, route: str
) -> None:
    """Flask matched no rule for it (no url_rule): the route label was <unmatched>."""
    with caplog.at_level(logging.INFO, logger="rates_platform.access"):
        client.open("/rates" + query, method=method, headers={"X-Request-ID": "edge-405"})
    lines = [r for r in caplog.records if getattr(r, "request_id", None) == "edge-405"]
    assert [line.route for line in lines] == [route]  # type: ignore[attr-defined]


class _BrokenRecorder(Recorder):
    def record(self, **facts: Any) -> None:
        raise OSError("metrics store unwritable")


def test_a_broken_metrics_store_is_a_500_problem_as_in_flask(sample_db: Any) -> None:
    """Flask turned a failing after-request hook into a 500 problem; the edge must not
    hand the exception to the server after choosing its status line."""
    settings = settings_for(sample_db.app)
    app: Flask = create_app(settings)
    database = app.extensions["database"]
    rates = Route("/rates2", "rates.rates", lambda params: b"{}")
    app.wsgi_app = Edge(  # type: ignore[method-assign]
        app.wsgi_app, [rates], _BrokenRecorder(database.pool), Guard(settings, database)
    )
    response = app.test_client().get("/rates2", headers={"X-Request-ID": "broken-1"})
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert response.headers["X-Request-ID"] == response.json["request_id"] == "broken-1"
    assert b"unwritable" not in response.data
