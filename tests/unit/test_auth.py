"""Credential rules without a server: key format and hashing, the JWKS cache's refresh
floor, token checks (keys made with cryptography, tokens signed by PyJWT)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.datastructures import Headers

from rates_platform.apikeys import domain
from rates_platform.apikeys.errors import InvalidKeyRequest
from rates_platform.http.auth import (
    JWKS_MAX_AGE_SECONDS,
    JWKS_MIN_REFRESH_SECONDS,
    AuthFailure,
    EntraAuthenticator,
    JwksCache,
)

ISSUER = "https://login.microsoftonline.com/tenant/v2.0"
AUDIENCE = "api://rates"


def test_new_keys_are_random_well_formed_and_only_their_hash_is_kept() -> None:
    first, second = domain.new_key(), domain.new_key()
    assert first.key != second.key
    assert domain.prefix_of(first.key) == first.prefix
    assert first.key_hash == domain.key_hash(first.key)
    assert first.key.encode() not in first.key_hash
    assert len(first.key_hash) == 32


@pytest.mark.parametrize(
    "junk", ["", "rk_short_x", "Bearer abc", "rk_" + "a" * 12 + "_" + "b" * 42]
)
def test_malformed_keys_have_no_prefix(junk: str) -> None:
    assert domain.prefix_of(junk) is None


@pytest.mark.parametrize(
    ("name", "scopes", "rate_limit", "days", "message"),
    [
        ("", ["rates:read"], None, None, "--name"),
        ("p", [], None, None, "--scopes"),
        ("p", ["rates read"], None, None, "--scopes"),
        ("p", ["rates:read"], "lots", None, "--rate-limit"),
        ("p", ["rates:read"], "99999999999999999999/second", None, "--rate-limit"),
        ("p", ["rates:read"], "0/second", None, "--rate-limit"),
        ("p", ["rates:read"], None, 0, "--expires-in-days"),
    ],
)
def test_bad_key_requests_are_refused(
    name: str, scopes: list[str], rate_limit: str | None, days: int | None, message: str
) -> None:
    with pytest.raises(InvalidKeyRequest, match=message):
        domain.check_new(name, scopes, rate_limit, days)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks(kid: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_jwks_refresh_on_unknown_kid_has_a_floor() -> None:
    key, fetched, clock = rsa_key(), [], FakeClock()

    def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return jwks("k1", key)

    cache = JwksCache("https://jwks", fetch, clock)
    assert cache.key("k1") is not None
    for _ in range(50):
        assert cache.key("made-up") is None
    assert len(fetched) == 1  # a flood of unknown kids costs no fetch within the floor
    clock.now += JWKS_MIN_REFRESH_SECONDS
    assert cache.key("made-up") is None
    assert len(fetched) == 2
    assert cache.key("k1") is not None
    clock.now += JWKS_MAX_AGE_SECONDS
    cache.key("k1")
    assert len(fetched) == 3  # known keys are refreshed too, hourly


def test_a_failed_refresh_keeps_the_known_keys() -> None:
    key, clock, calls = rsa_key(), FakeClock(), []

    def fetch(url: str) -> dict[str, Any]:
        calls.append(url)
        if len(calls) > 1:
            raise OSError("unreachable")
        return jwks("k1", key)

    cache = JwksCache("https://jwks", fetch, clock)
    assert cache.key("k1") is not None
    clock.now += JWKS_MAX_AGE_SECONDS
    assert cache.key("k1") is not None


def authenticate(token: str, key: rsa.RSAPrivateKey) -> set[str]:
    entra = EntraAuthenticator(
        JwksCache("https://jwks", lambda _: jwks("k1", key)), AUDIENCE, ISSUER
    )
    principal = entra.authenticate(Headers({"Authorization": f"Bearer {token}"}))
    return set(principal.scopes)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "azp": "client", **overrides}


def test_scopes_come_from_scp_and_roles() -> None:
    key = rsa_key()
    token = jwt.encode(
        claims(scp="rates:read other", roles=["x:y"]), key, "RS256", headers={"kid": "k1"}
    )
    assert authenticate(token, key) == {"rates:read", "other", "x:y"}


def test_a_token_signed_with_the_public_key_as_an_hmac_secret_is_refused() -> None:
    key = rsa_key()
    token = jwt.encode(
        claims(scp="rates:read"),
        b"a public key in PEM, misused as an HMAC secret",
        "HS256",
        headers={"kid": "k1"},
    )
    with pytest.raises(AuthFailure, match="algorithm") as failure:
        authenticate(token, key)
    assert failure.value.status == 401
    assert token not in str(failure.value)
