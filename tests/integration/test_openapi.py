"""The OpenAPI document is valid, complete, and describes what the API really returns."""

from __future__ import annotations

from typing import Any

import jsonschema
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

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
    routes = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith(UNDOCUMENTED_PREFIXES)
    }
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
