"""RFC 9457 problem responses for every error, so clients never see HTML or a trace.

A ``Problem`` says what went wrong; Flask's routes answer it with ``response``, and
the edge (``http.edge``), which serves /rates without Flask, writes ``Problem.body``
itself. Both map exceptions to problems with ``problem_for``, so the two agree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from flask import Flask, Response, g, request
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

from rates_platform.rates.errors import InvalidRatesQuery

PROBLEM_TYPE_PREFIX = "urn:rates-platform:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"
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


@dataclass(frozen=True)
class Problem:
    status: int
    problem_type: str
    title: str
    detail: str
    headers: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def body(self, instance: str, request_id: str | None) -> bytes:
        return orjson.dumps(
            {
                "type": PROBLEM_TYPE_PREFIX + self.problem_type,
                "title": self.title,
                "status": self.status,
                "detail": self.detail,
                "instance": instance,
                "request_id": request_id,
                **self.extra,
            }
        )


def response(problem: Problem) -> Response:
    """The problem as Flask's answer to the current request."""
    answer = Response(
        problem.body(request.path, g.get("request_id")),
        status=problem.status,
        mimetype=PROBLEM_MEDIA_TYPE,
    )
    answer.headers.update(problem.headers)
    return answer


def problem(
    status: int,
    problem_type: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    return response(Problem(status, problem_type, title, detail, headers or {}, extra))


def _invalid_query(exc: InvalidRatesQuery) -> Problem:
    return Problem(
        400,
        exc.problem_type,
        exc.title,
        exc.detail,
        extra={
            "parameter": exc.parameter,
            "invalid_params": [{"name": exc.parameter, "reason": exc.detail}],
        },
    )


def _http_problem(exc: HTTPException) -> Problem:
    status = exc.code or 500
    headers = {}
    if status == 405:
        headers["Allow"] = exc.get_response().headers.get("Allow", "")
    return Problem(
        status,
        _HTTP_PROBLEM_TYPES.get(status, f"http-{status}"),
        exc.name,
        exc.description or exc.name,
        headers,
    )


def _database_unavailable(exc: Exception) -> Problem:
    # The class name is enough to diagnose; messages may carry connection details.
    _log.warning("database unavailable", extra={"error": type(exc).__name__})
    return Problem(
        503,
        "database-unavailable",
        "Service Unavailable",
        "The database is unreachable or too slow right now; retry shortly.",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _unexpected(exc: Exception) -> Problem:
    _log.error("unhandled error", exc_info=exc)
    return Problem(
        500,
        "internal-error",
        "Internal Server Error",
        "An unexpected error occurred; quote the request id when reporting it.",
    )


def problem_for(exc: Exception) -> Problem:
    """The problem a request that raised ``exc`` answers with; logs what operators need."""
    if isinstance(exc, InvalidRatesQuery):
        return _invalid_query(exc)
    if isinstance(exc, HTTPException):
        return _http_problem(exc)
    if isinstance(exc, PoolTimeout | psycopg.OperationalError):
        return _database_unavailable(exc)
    return _unexpected(exc)


def register(app: Flask) -> None:
    # Flask hands HTTP errors (404, 405...) to the handler for Exception too; redirects
    # are not errors and never reach it.
    app.register_error_handler(Exception, lambda exc: response(problem_for(exc)))
