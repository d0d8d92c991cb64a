"""The public path's guards, in order: the gateway's id, the caller's credential,
the caller's rate limit. Only the guards the settings ask for are installed, so the
default (public, unlimited) path costs nothing more per request."""

from __future__ import annotations

import hmac
import logging
import sqlite3
import time

from flask import Flask, Response, g, request
from prometheus_client import Counter

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
from rates_platform.http.problems import problem
from rates_platform.http.ratelimit import (
    RateLimiter,
    SharedFileStorage,
    client_address,
    instance_directory,
)
from rates_platform.settings import Settings

FRONT_DOOR_HEADER = "X-Azure-FDID"
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


def register(app: Flask, settings: Settings, database: Database) -> None:
    authenticator = _authenticator(settings, database)
    limiter = (
        RateLimiter(SharedFileStorage(instance_directory()), settings.rate_limit)
        if settings.rate_limit or settings.auth_mode == "api-key"  # keys may carry limits
        else None
    )
    front_door_id = settings.front_door_id.encode()
    store_failures = _ThrottledWarning("rate limits not checked: their store failed")
    trusted = settings.trusted_proxies
    # Failed credentials count against the caller's address (when RATE_LIMIT is set),
    # so made-up keys or tokens are limited like anonymous requests. Addresses over
    # it are refused until their window ends before any key lookup or token check.
    address_limiter = limiter if limiter is not None and limiter.policy_for(None) else None
    failing: dict[str, float] = {}

    def address() -> str:
        forwarded = request.environ.get("HTTP_X_FORWARDED_FOR")  # cheaper than .headers
        return "addr:" + client_address(request.remote_addr or "", forwarded, trusted)

    def charge_failure(limiter: RateLimiter) -> Response | None:
        refused = limit(limiter, None)
        if refused is not None:
            if len(failing) >= MAX_FAILING_ADDRESSES:
                failing.clear()
            retry_after = float(refused.headers.get("Retry-After", "1"))
            failing[address()] = time.monotonic() + retry_after
        return refused

    def guard() -> Response | None:
        if front_door_id and request.path not in PROBES:
            presented = request.headers.get(FRONT_DOOR_HEADER, "").encode()
            if not hmac.compare_digest(presented, front_door_id):
                return problem(
                    403,
                    "not-through-gateway",
                    "Forbidden",
                    "Requests must come through the API's gateway.",
                )
        principal: Principal | None = None
        scope = REQUIRED_SCOPES.get(request.endpoint or "") if authenticator is not None else None
        if authenticator is not None and scope is not None:
            if address_limiter is not None and failing.get(address(), 0.0) > time.monotonic():
                return charge_failure(address_limiter)
            try:
                principal = authenticator.authenticate(request.headers)
                require_scope(principal, scope, authenticator.scheme)
            except AuthFailure as failure:
                refused = None if address_limiter is None else charge_failure(address_limiter)
                if refused is not None:
                    return refused
                return problem(
                    failure.status,
                    failure.problem_type,
                    "Unauthorized" if failure.status == 401 else "Forbidden",
                    failure.detail,
                    {"WWW-Authenticate": failure.challenge},
                )
        if limiter is None or request.path in PROBES:  # the platform's probes: never a 429
            return None
        return limit(limiter, principal)

    def limit(limiter: RateLimiter, principal: Principal | None) -> Response | None:
        policy = limiter.policy_for(principal.rate_limit if principal else None)
        if policy is None:
            return None
        identity = principal.identity if principal is not None else address()
        try:
            verdict = limiter.hit(identity, policy)
        except (sqlite3.Error, OSError) as exc:
            # Fail open: the limit is defence in depth behind the gateway's, and a
            # broken counter file must not take the API down with it.
            store_failures.warn(exc)
            return None
        g.rate_limit_headers = verdict.headers
        if verdict.allowed:
            return None
        LIMITED.labels(f"{identity.partition(':')[0]}:{verdict.reason}").inc()
        return problem(
            429,
            "rate-limited",
            "Too Many Requests",
            "This client sent too many requests; retry after the time in Retry-After.",
            verdict.headers,
        )

    def add_headers(response: Response) -> Response:
        headers = g.get("rate_limit_headers")
        if headers:
            response.headers.update(headers)
        return response

    if authenticator is not None or limiter is not None or front_door_id:
        app.before_request(guard)
    if limiter is not None:
        app.after_request(add_headers)
