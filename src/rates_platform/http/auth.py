"""Client authentication: API keys (AUTH_MODE=api-key) or Entra ID tokens (entra).

Failures are 401 (no or bad credentials) or 403 (valid, but without the scope the
route needs), each with a WWW-Authenticate challenge. Neither a key nor a token is
ever logged or echoed: errors name only what was wrong with it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from werkzeug.datastructures import Headers

from rates_platform.apikeys.service import KeyLookup

API_KEY_HEADER = "X-API-Key"
REALM = "rates"
# Only RS256: never "none", never an HMAC algorithm a public key could be misused for.
TOKEN_ALGORITHMS = ("RS256",)
# Tokens are accepted this many seconds past exp (clock skew between Entra and us).
CLOCK_SKEW_SECONDS = 30
# An unknown key id triggers a JWKS refresh at most this often (a flood of made-up kids
# must not become a flood of requests to Entra); known keys are refreshed hourly.
JWKS_MIN_REFRESH_SECONDS = 60.0
JWKS_MAX_AGE_SECONDS = 3600.0
JWKS_FETCH_TIMEOUT_SECONDS = 5.0

_log = logging.getLogger("rates_platform.auth")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: who (for limits; never a secret), and what it may do."""

    identity: str
    scopes: frozenset[str]
    rate_limit: str | None = None


class AuthFailure(Exception):
    """401 or 403 with a challenge; the message is safe to show (it holds no credential)."""

    def __init__(self, status: int, problem_type: str, detail: str, challenge: str) -> None:
        super().__init__(detail)
        self.status, self.problem_type, self.detail, self.challenge = (
            status,
            problem_type,
            detail,
            challenge,
        )


class Authenticator(Protocol):
    scheme: str

    def authenticate(self, headers: Headers) -> Principal: ...


def require_scope(principal: Principal, scope: str, scheme: str) -> None:
    if scope not in principal.scopes:
        raise AuthFailure(
            403,
            "insufficient-scope",
            f"The credential does not grant the scope {scope}.",
            f'{scheme} realm="{REALM}", error="insufficient_scope", scope="{scope}"',
        )


class ApiKeyAuthenticator:
    scheme = "ApiKey"

    def __init__(self, lookup: KeyLookup) -> None:
        self._lookup = lookup

    def authenticate(self, headers: Headers) -> Principal:
        presented = headers.get(API_KEY_HEADER)
        if not presented:
            raise AuthFailure(
                401,
                "unauthenticated",
                f"An API key is required in the {API_KEY_HEADER} header.",
                f'{self.scheme} realm="{REALM}", header="{API_KEY_HEADER}"',
            )
        stored = self._lookup.find(presented)
        if stored is None:
            raise AuthFailure(
                401,
                "invalid-credentials",
                "The API key is unknown, revoked or expired.",
                f'{self.scheme} realm="{REALM}", error="invalid_key"',
            )
        return Principal(f"key:{stored.id}", frozenset(stored.scopes), stored.rate_limit)


def _fetch_json(url: str) -> Any:
    # Settings allow https (or http to loopback) only.
    with urllib.request.urlopen(url, timeout=JWKS_FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 # nosec B310
        return json.load(response)


class JwksCache:
    """The tenant's signing keys by key id, refreshed hourly and on an unknown kid
    (no more than once a minute); a failed refresh keeps the keys already known."""

    def __init__(
        self,
        url: str,
        fetch: Callable[[str], Any] = _fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url, self._fetch, self._clock = url, fetch, clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            now = self._clock()
            age = None if self._fetched_at is None else now - self._fetched_at
            if (
                age is None
                or age >= JWKS_MAX_AGE_SECONDS
                or (kid not in self._keys and age >= JWKS_MIN_REFRESH_SECONDS)
            ):
                self._refresh(now)
            return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        self._fetched_at = now
        try:
            keys = jwt.PyJWKSet.from_dict(self._fetch(self._url)).keys
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            _log.warning("could not refresh the JWKS", extra={"error": type(exc).__name__})
            return
        self._keys = {k.key_id: k for k in keys if k.key_id}


# What a client may be told about a refused token: the class of the failure only.
_TOKEN_ERRORS: dict[type[jwt.PyJWTError], str] = {
    jwt.ExpiredSignatureError: "The token has expired.",
    jwt.InvalidAudienceError: "The token is not for this API (audience).",
    jwt.InvalidIssuerError: "The token was not issued by the expected tenant.",
    jwt.ImmatureSignatureError: "The token is not valid yet.",
    jwt.MissingRequiredClaimError: "The token lacks a required claim.",
    jwt.InvalidSignatureError: "The token's signature does not verify.",
}


class EntraAuthenticator:
    scheme = "Bearer"

    def __init__(self, jwks: JwksCache, audience: str, issuer: str) -> None:
        self._jwks, self._audience, self._issuer = jwks, audience, issuer

    def _invalid(self, detail: str) -> AuthFailure:
        return AuthFailure(
            401,
            "invalid-credentials",
            detail,
            f'{self.scheme} realm="{REALM}", error="invalid_token"',
        )

    def authenticate(self, headers: Headers) -> Principal:
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthFailure(
                401,
                "unauthenticated",
                "A bearer token from Entra ID is required in the Authorization header.",
                f'{self.scheme} realm="{REALM}"',
            )
        claims = self._verify(token.strip())
        scopes = set(str(claims.get("scp", "")).split())
        roles = claims.get("roles")
        if isinstance(roles, list):
            scopes.update(str(r) for r in roles)
        who = claims.get("azp") or claims.get("appid") or claims.get("sub")
        return Principal(f"app:{str(who)[:64]}", frozenset(scopes))

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise self._invalid("The token is malformed.") from None
        if header.get("alg") not in TOKEN_ALGORITHMS:
            raise self._invalid("The token's algorithm is not accepted.")
        kid = header.get("kid")
        key = self._jwks.key(kid) if isinstance(kid, str) else None
        if key is None:
            raise self._invalid("The token's signing key is unknown.")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=list(TOKEN_ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            detail = next(
                (text for cls, text in _TOKEN_ERRORS.items() if isinstance(exc, cls)),
                "The token is not valid.",
            )
            raise self._invalid(detail) from None
        return claims
