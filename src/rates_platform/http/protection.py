"""The public path's guards, in order: the gateway's id, the caller's credential,
the caller's rate limit. Only the guards the settings ask for are installed, so the
default (public, unlimited) path costs nothing more per request."""

from __future__ import annotations

import hmac
import logging
import sqlite3
import time
from typing import Any

from flask import Flask, Response, request
from prometheus_client import Counter
from werkzeug.datastructures import EnvironHeaders

from rates_platform.apikeys.service import KeyLookup
from rates_platform.db import Database
from rates_platform.http.auth import (
    ApiKeyAuthenticator,
    Authenticator,
    AuthFailure,
    EntraAuthenticator,
    JwksCache,
    Principal,
    require_scope,
)
from rates_platform.http.problems import Problem, response
from rates_platform.http.ratelimit import (
    RateLimiter,
    SharedFileStorage,
    client_address,
    instance_directory,
)
from rates_platform.settings import Settings

FRONT_DOOR_HEADER = "X-Azure-FDID"
_FRONT_DOOR_ENVIRON_KEY = "HTTP_X_AZURE_FDID"
# The platform probes the replica directly, not through the gateway.
PROBES = frozenset({"/healthz", "/readyz"})
# Routes that need a credential (when AUTH_MODE is not public), by endpoint.
REQUIRED_SCOPES = {"rates.rates": "rates:read"}

_log = logging.getLogger("rates_platform.protection")
# Past this many addresses refused for failed credentials, the list starts afresh.
MAX_FAILING_ADDRESSES = 10_000

LIMITED = Counter(
    "http_requests_limited_total",
    "Requests refused by a rate limit, by who was limited and the window's unit.",
    ["reason"],
)


class _ThrottledWarning:
    """Logs one warning at most every LOG_INTERVAL_SECONDS per process, not one per request."""

    LOG_INTERVAL_SECONDS = 10.0

    def __init__(self, message: str) -> None:
        self._message, self._logged_at = message, float("-inf")

    def warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._logged_at >= self.LOG_INTERVAL_SECONDS:  # a benign race at worst
            self._logged_at = now
            _log.warning(self._message, extra={"error": type(exc).__name__})


def _authenticator(settings: Settings, database: Database) -> Authenticator | None:
    if settings.auth_mode == "api-key":
        return ApiKeyAuthenticator(KeyLookup(database))
    if settings.auth_mode == "entra":
        return EntraAuthenticator(
            JwksCache(settings.entra_jwks_url), settings.entra_audience, settings.entra_issuer
        )
    return None


# Where a request's RateLimit headers wait for its response, in the WSGI environ.
RATE_LIMIT_HEADERS_KEY = "rates_platform.rate_limit_headers"


class Guard:
    """The guards the settings ask for, checked on a request's WSGI environ, so Flask's
    routes and the edge's (``http.edge``) are guarded by the same code."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self._authenticator = _authenticator(settings, database)
        self._limiter = (
            RateLimiter(SharedFileStorage(instance_directory()), settings.rate_limit)
            if settings.rate_limit or settings.auth_mode == "api-key"  # keys may carry limits
            else None
        )
        self._front_door_id = settings.front_door_id.encode()
        self._store_failures = _ThrottledWarning("rate limits not checked: their store failed")
        self._trusted = settings.trusted_proxies
        # Failed credentials count against the caller's address (when RATE_LIMIT is set),
        # so made-up keys or tokens are limited like anonymous requests. Addresses over
        # it are refused until their window ends before any key lookup or token check.
        limiter = self._limiter
        self._address_limiter = limiter if limiter and limiter.policy_for(None) else None
        self._failing: dict[str, float] = {}

    @property
    def installed(self) -> bool:
        """Whether any guard applies; the default (public, unlimited) path has none."""
        return self._authenticator is not None or self.limits or bool(self._front_door_id)

    @property
    def limits(self) -> bool:
        return self._limiter is not None

    def check(self, environ: dict[str, Any], path: str, endpoint: str | None) -> Problem | None:
        """The problem that refuses this request, or None to serve it. Leaves the
        request's RateLimit headers in the environ (``rate_limit_headers``)."""
        if self._front_door_id and path not in PROBES:
            presented = environ.get(_FRONT_DOOR_ENVIRON_KEY, "").encode()
            if not hmac.compare_digest(presented, self._front_door_id):
                return Problem(
                    403,
                    "not-through-gateway",
                    "Forbidden",
                    "Requests must come through the API's gateway.",
                )
        principal: Principal | None = None
        authenticator = self._authenticator
        scope = REQUIRED_SCOPES.get(endpoint or "") if authenticator is not None else None
        if authenticator is not None and scope is not None:
            address_limiter = self._address_limiter
            if (
                address_limiter is not None
                and self._failing.get(self._address(environ), 0.0) > time.monotonic()
            ):
                return self._charge_failure(environ, address_limiter)
            try:
                principal = authenticator.authenticate(EnvironHeaders(environ))
                require_scope(principal, scope, authenticator.scheme)
            except AuthFailure as failure:
                refused = (
                    None
                    if address_limiter is None
                    else self._charge_failure(environ, address_limiter)
                )
                if refused is not None:
                    return refused
                return Problem(
                    failure.status,
                    failure.problem_type,
                    "Unauthorized" if failure.status == 401 else "Forbidden",
                    failure.detail,
                    {"WWW-Authenticate": failure.challenge},
                )
        if self._limiter is None or path in PROBES:  # the platform's probes: never a 429
            return None
        return self._limit(environ, self._limiter, principal)

    @staticmethod
    def rate_limit_headers(environ: dict[str, Any]) -> dict[str, str] | None:
        headers: dict[str, str] | None = environ.get(RATE_LIMIT_HEADERS_KEY)
        return headers

    def _address(self, environ: dict[str, Any]) -> str:
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        return "addr:" + client_address(environ.get("REMOTE_ADDR") or "", forwarded, self._trusted)

    def _charge_failure(self, environ: dict[str, Any], limiter: RateLimiter) -> Problem | None:
        refused = self._limit(environ, limiter, None)
        if refused is not None:
            if len(self._failing) >= MAX_FAILING_ADDRESSES:
                self._failing.clear()
            retry_after = float(refused.headers.get("Retry-After", "1"))
            self._failing[self._address(environ)] = time.monotonic() + retry_after
        return refused

    def _limit(
        self, environ: dict[str, Any], limiter: RateLimiter, principal: Principal | None
    ) -> Problem | None:
        policy = limiter.policy_for(principal.rate_limit if principal else None)
        if policy is None:
            return None
        identity = principal.identity if principal is not None else self._address(environ)
        try:
            verdict = limiter.hit(identity, policy)
        except (sqlite3.Error, OSError) as exc:
            # Fail open: the limit is defence in depth behind the gateway's, and a
            # broken counter file must not take the API down with it.
            self._store_failures.warn(exc)
            return None
        environ[RATE_LIMIT_HEADERS_KEY] = verdict.headers
        if verdict.allowed:
            return None
        LIMITED.labels(f"{identity.partition(':')[0]}:{verdict.reason}").inc()
        return Problem(
            429,
            "rate-limited",
            "Too Many Requests",
            "This client sent too many requests; retry after the time in Retry-After.",
            verdict.headers,
        )


def register(app: Flask, settings: Settings, database: Database) -> Guard:
    """Guards Flask's routes with the settings' guards; returns them for the edge's."""
    guard = Guard(settings, database)

    def check() -> Response | None:
        refusal = guard.check(request.environ, request.path, request.endpoint)
        return None if refusal is None else response(refusal)

    def add_headers(answer: Response) -> Response:
        headers = guard.rate_limit_headers(request.environ)
        if headers:
            answer.headers.update(headers)
        return answer

    if guard.installed:
        app.before_request(check)
    if guard.limits:
        app.after_request(add_headers)
    return guard
