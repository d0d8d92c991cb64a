"""The WSGI layer in front of Flask: the hot route, served without Flask's request cycle.

Flask's cycle (request and app contexts, URL adapter, request and response objects,
hooks) cost ~180 µs of the ~480 µs of server CPU a /rates request took under load.
The edge serves /rates itself with everything a Flask route has, from the same code:
the request id, the 414, the guards (``protection.Guard``), a problem for every error
(``problems.problem_for``), the metrics and the access line (``observability.Recorder``).
Every other path goes to Flask.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import MethodNotAllowed, RequestURITooLarge
from werkzeug.http import HTTP_STATUS_CODES

from rates_platform.http import observability
from rates_platform.http.observability import REQUEST_ID_HEADER, Recorder
from rates_platform.http.problems import PROBLEM_MEDIA_TYPE, Problem, problem_for
from rates_platform.http.protection import Guard

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

SERVED_METHODS = ("GET", "HEAD")
ALLOWED_METHODS = ("GET", "HEAD", "OPTIONS")
_ALLOW = ", ".join(ALLOWED_METHODS)


@dataclass(frozen=True)
class Route:
    """A read-only route the edge serves: its path, the endpoint its guards know it by
    (``protection.REQUIRED_SCOPES``), and its JSON body from the query's parameters."""

    path: str
    endpoint: str
    body: Callable[[Mapping[str, str]], bytes]


@cache  # a handful of statuses, looked up on every request
def _status_line(status: int) -> str:
    return f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}"  # as werkzeug's


def query_parameters(environ: Environ) -> MultiDict[str, str]:
    """The query string's parameters exactly as Flask's ``request.args`` reads them:
    blank values kept, the first of repeated names wins, bad escapes quoted back."""
    query = environ.get("QUERY_STRING", "").encode("latin1").decode()
    return MultiDict(parse_qsl(query, keep_blank_values=True, errors="werkzeug.url_quote"))


class Edge:
    """A WSGI app: ``routes`` served here, everything else by ``app`` (Flask's)."""

    def __init__(
        self, app: WSGIApp, routes: Iterable[Route], recorder: Recorder, guard: Guard
    ) -> None:
        self._app, self._recorder = app, recorder
        self._routes = {route.path: route for route in routes}
        self._guard = guard if guard.installed else None

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self._routes)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        # Werkzeug's request.path: leading slashes collapsed, so "//rates" is /rates.
        route = self._routes.get("/" + environ.get("PATH_INFO", "").lstrip("/"))
        if route is None:
            return self._app(environ, start_response)
        started = time.perf_counter()
        request_id = observability.request_id(environ)
        method = environ.get("REQUEST_METHOD", "GET").upper()  # as werkzeug reads it
        status, headers, body = self._answer(route, environ, method, request_id)
        if self._guard is not None and (limits := self._guard.rate_limit_headers(environ)):
            headers.update(limits)
        try:
            self._recorder.record(
                request_id=request_id,
                method=method,
                # Flask matched no rule for a method the route lacks: its 405s were unmatched.
                route=route.path if method in ALLOWED_METHODS else observability.UNMATCHED_ROUTE,
                path=route.path,
                status=status,
                elapsed=time.perf_counter() - started,
            )
        except Exception as exc:  # a broken metrics store: a 500 problem, as Flask answered
            status, headers, body = self._problem(problem_for(exc), route, request_id)
        headers[REQUEST_ID_HEADER] = request_id
        start_response(_status_line(status), list(headers.items()))
        # Bodiless only for HEAD as sent: werkzeug's check, and what the server frames.
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _answer(
        self, route: Route, environ: Environ, method: str, request_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body, in the order Flask's hooks run: the 414 check, the
        guards, then the method, then the route."""
        try:
            if observability.query_too_long(environ):
                raise RequestURITooLarge
            if self._guard is not None:
                endpoint = route.endpoint if method in ALLOWED_METHODS else None
                refusal = self._guard.check(environ, route.path, endpoint)
                if refusal is not None:
                    return self._problem(refusal, route, request_id)
            if method == "OPTIONS":
                return 200, {"Allow": _ALLOW, "Content-Length": "0"}, b""
            if method not in SERVED_METHODS:
                raise MethodNotAllowed(valid_methods=list(ALLOWED_METHODS))
            body = route.body(query_parameters(environ))
        except Exception as exc:  # every error is a problem, as Flask's handler makes it
            return self._problem(problem_for(exc), route, request_id)
        return 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body

    @staticmethod
    def _problem(
        problem: Problem, route: Route, request_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        body = problem.body(route.path, request_id)
        headers = {"Content-Type": PROBLEM_MEDIA_TYPE, "Content-Length": str(len(body))}
        return problem.status, {**headers, **problem.headers}, body
