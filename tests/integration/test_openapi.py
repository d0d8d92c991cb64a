"""The OpenAPI document is valid, complete, and describes what the API really returns."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from rates_platform.http.edge import Edge
from rates_platform.http.ops import openapi_document

# Static files of the docs page itself, not part of the API.
UNDOCUMENTED_PREFIXES = ("/docs/",)


def schema_for(name: str) -> dict[str, Any]:
    document = openapi_document()
    return {"$ref": f"#/components/schemas/{name}", "components": document["components"]}


def test_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    document = client.get("/openapi.json").json
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_route_is_documented(app: Flask) -> None:
    """Flask's routes and the ones the edge serves in front of it."""
    assert isinstance(app.wsgi_app, Edge)
    routes = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith(UNDOCUMENTED_PREFIXES)
    } | app.wsgi_app.paths
    assert "/rates" in routes
    assert routes == set(openapi_document()["paths"])


def test_responses_match_their_schemas(client: FlaskClient) -> None:
    ok = client.get(
        "/rates?date_from=2021-01-01&date_to=2021-01-03&orig_code=china_main&dest_code=EETLL"
    )
    jsonschema.validate(ok.json, schema_for("Rates"))
    problem = client.get("/rates?date_from=2021-01-01")
    jsonschema.validate(problem.json, schema_for("Problem"))
    for status_path in ("/healthz", "/readyz"):
        jsonschema.validate(client.get(status_path).json, schema_for("Status"))


def test_docs_page_runs_only_local_files_under_a_strict_policy(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in page.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert "unsafe" not in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts, html
    assert all(' src="docs/' in attributes and body == "" for attributes, body in scripts)
    assert "://" not in html  # nothing from another host


@pytest.mark.parametrize(
    ("path", "mimetype", "marker"),
    [
        ("/docs/init.js", "text/javascript", b"SwaggerUIBundle("),
        ("/docs/swagger-ui-bundle.js", "text/javascript", b"SwaggerUIBundle"),
        ("/docs/swagger-ui.css", "text/css", b".swagger-ui"),
        ("/docs/favicon-32x32.png", "image/png", b"\x89PNG"),
    ],
)
def test_docs_assets_are_served_with_their_types(
    client: FlaskClient, path: str, mimetype: str, marker: bytes
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert marker in response.data


def test_docs_serve_swagger_ui_5_which_reads_openapi_3_1(client: FlaskClient) -> None:
    """Swagger UI 4 answers a 3.1 document with "Unable to render this definition"."""
    assert b"isOAS31" in client.get("/docs/swagger-ui-bundle.js").data
    assert client.get("/docs/swagger-ui.js").status_code == 404  # only what the page loads
