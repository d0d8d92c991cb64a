"""Operational routes: liveness, readiness, the OpenAPI document and its docs.

/metrics is not here: the server's main process serves it on the internal listener
(METRICS_HOST:METRICS_PORT, see serving), never on the public one.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from flask import Blueprint, Response, current_app, send_from_directory

from rates_platform.db import Database
from rates_platform.http.problems import RETRY_AFTER_SECONDS, problem

bp = Blueprint("ops", __name__)

# Swagger UI 5 (it reads OpenAPI 3.1), from the flask-swagger-ui wheel's dist files.
_SWAGGER_UI_DIST = str(resources.files("flask_swagger_ui").joinpath("dist"))
_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rates API</title>
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
<link rel="stylesheet" href="docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script></body></html>
"""
_DOCS_INIT = """window.ui = SwaggerUIBundle({
  url: "openapi.json", dom_id: "#swagger-ui", validatorUrl: null, deepLinking: true,
});
"""
# No inline script or style may run; Swagger UI's CSS draws its icons as data: images.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@cache
def openapi_document() -> dict[str, Any]:
    text = resources.files("rates_platform").joinpath("openapi.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers; deliberately does not touch the database."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> Response | dict[str, str]:
    """Readiness: a pooled connection answers a trivial query within the timeout."""
    db: Database = current_app.extensions["database"]
    timeout = current_app.config["READY_TIMEOUT"]
    try:
        with db.connection(timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except Exception:  # any failure means "not ready"; the reason goes to the log
        current_app.logger.warning("readiness check failed", exc_info=True)
        return problem(
            503,
            "not-ready",
            "Service Unavailable",
            "The database is not reachable.",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return {"status": "ready"}


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    return openapi_document()


@bp.get("/docs")
def docs() -> Response:
    return Response(_DOCS_PAGE, mimetype="text/html", headers={"Content-Security-Policy": DOCS_CSP})


@bp.get("/docs/init.js")
def docs_init() -> Response:
    return Response(_DOCS_INIT, mimetype="text/javascript")


@bp.get("/docs/<any('swagger-ui.css', 'swagger-ui-bundle.js', 'favicon-32x32.png'):asset>")
def docs_asset(asset: str) -> Response:
    return send_from_directory(_SWAGGER_UI_DIST, asset)
