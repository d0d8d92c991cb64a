"""RFC 9457 problem responses for every error, so clients never see HTML or a trace."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from flask import Flask, Response, g, json, request
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

from rates_platform.rates.errors import InvalidRatesQuery

PROBLEM_TYPE_PREFIX = "urn:rates-platform:problem:"
RETRY_AFTER_SECONDS = 2
_log = logging.getLogger("rates_platform.errors")

# Stable problem types for the HTTP statuses the framework itself produces.
_HTTP_PROBLEM_TYPES = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "content-too-large",
    414: "uri-too-long",
    431: "request-header-fields-too-large",
}


def problem(
    status: int,
    problem_type: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = {
        "type": PROBLEM_TYPE_PREFIX + problem_type,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        "request_id": g.get("request_id"),
        **extra,
    }
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    response.headers.update(headers or {})
    return response


def _invalid_query(exc: InvalidRatesQuery) -> Response:
    return problem(
        400,
        exc.problem_type,
        exc.title,
        exc.detail,
        parameter=exc.parameter,
        invalid_params=[{"name": exc.parameter, "reason": exc.detail}],
    )


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers = {}
    if status == 405:
        headers["Allow"] = exc.get_response().headers.get("Allow", "")
    return problem(
        status,
        _HTTP_PROBLEM_TYPES.get(status, f"http-{status}"),
        exc.name,
        exc.description or exc.name,
        headers,
    )


def _database_unavailable(exc: Exception) -> Response:
    # The class name is enough to diagnose; messages may carry connection details.
    _log.warning("database unavailable", extra={"error": type(exc).__name__})
    return problem(
        503,
        "database-unavailable",
        "Service Unavailable",
        "The database is unreachable or too slow right now; retry shortly.",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _unexpected(exc: Exception) -> Response:
    _log.error("unhandled error", exc_info=exc)
    return problem(
        500,
        "internal-error",
        "Internal Server Error",
        "An unexpected error occurred; quote the request id when reporting it.",
    )


def register(app: Flask) -> None:
    app.register_error_handler(InvalidRatesQuery, _invalid_query)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(PoolTimeout, _database_unavailable)
    app.register_error_handler(psycopg.OperationalError, _database_unavailable)
    app.register_error_handler(Exception, _unexpected)
