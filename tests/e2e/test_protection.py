"""Public API protection against the real server (`rates serve`, granian) over real
sockets: per-client limits across workers, forwarded-for trust, API keys, Entra ID
tokens against a local JWKS stand-in, the gateway id, and no credential in any log.

Distinct clients are distinct loopback addresses (127.0.0.2, 127.0.0.3, ...): Linux
lets a socket bind any of them, so the server sees a real, different peer for each.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import ApiServer, PreparedDatabase

pytestmark = pytest.mark.e2e
RATES = "/rates?date_from=2021-01-01&date_to=2021-01-07&orig_code=CNGGZ&dest_code=EETLL"
PROBLEM = "application/problem+json"


def call(
    api: ApiServer, path: str, source: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One request on a new connection from ``source``: status, headers, JSON body."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        head = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    return response.status, head, json.loads(body) if body else {}


def assert_problem(
    answer: tuple[int, dict[str, str], dict[str, Any]], status: int, problem_type: str
) -> None:
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"] == PROBLEM
    assert body["status"] == status
    assert body["type"] == f"urn:rates-platform:problem:{problem_type}"


def test_an_abusive_client_is_limited_across_two_workers_while_a_polite_one_is_served(
    sample_db: PreparedDatabase, tmp_path: Path
) -> None:
    api = ApiServer(
        sample_db.app,
        RATE_LIMIT="20/minute",
        WEB_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    try:
        with ThreadPoolExecutor(8) as pool:  # 8 connections at once, each request a new one
            abusive = list(pool.map(lambda _: call(api, RATES, "127.0.0.2"), range(60)))
        polite = [call(api, RATES, "127.0.0.3") for _ in range(10)]
        served_by = {p.name for p in tmp_path.glob("counter_*.db")}
        metrics = api.metrics()
    finally:
        api.stop()
    statuses = [status for status, _, _ in abusive]
    # One shared count for the instance: 20 allowed, not 20 per worker.
    assert statuses.count(200) == 20, statuses
    assert statuses.count(429) == 40
    assert len(served_by) >= 2, served_by  # both workers answered
    refused = next(a for a in abusive if a[0] == 429)
    assert_problem(refused, 429, "rate-limited")
    assert 1 <= int(refused[1]["retry-after"]) <= 60
    assert refused[1]["ratelimit-policy"] == '"minute";q=20;w=60'
    assert refused[1]["ratelimit"].startswith('"minute";r=0;t=')
    assert [status for status, _, _ in polite] == [200] * 10
    assert polite[0][1]["ratelimit"].startswith('"minute";r=19;t=')
    assert 'http_requests_limited_total{reason="addr:minute"} 40.0' in metrics
    assert "127.0.0.2" not in metrics  # counted by reason, never by client


def test_forwarded_for_is_believed_only_from_trusted_proxies_and_the_gateway_id_is_checked(
    sample_db: PreparedDatabase,
) -> None:
    gateway = str(uuid.uuid4())
    api = ApiServer(
        sample_db.app,
        RATE_LIMIT="5/minute",
        TRUSTED_PROXIES="127.0.0.5/32",
        FRONT_DOOR_ID=gateway,
    )
    via = {"X-Azure-FDID": gateway}
    try:
        direct = call(api, RATES, "127.0.0.4")
        wrong = call(api, RATES, "127.0.0.4", {"X-Azure-FDID": str(uuid.uuid4())})
        probe = call(api, "/healthz", "127.0.0.6")
        # An untrusted peer forging a new address each time is still one client.
        forged = [
            call(api, RATES, "127.0.0.4", {**via, "X-Forwarded-For": f"198.51.100.{n}"})[0]
            for n in range(7)
        ]
        # Behind the trusted proxy, each forwarded address is a client of its own.
        first = [
            call(api, RATES, "127.0.0.5", {**via, "X-Forwarded-For": "1.2.3.4, 203.0.113.1"})[0]
            for _ in range(6)
        ]
        second = call(api, RATES, "127.0.0.5", {**via, "X-Forwarded-For": "203.0.113.2"})[0]
    finally:
        api.stop()
    assert_problem(direct, 403, "not-through-gateway")
    assert_problem(wrong, 403, "not-through-gateway")
    assert probe[0] == 200  # the platform's probes do not come through the gateway
    assert forged == [200] * 5 + [429] * 2
    assert first == [200] * 5 + [429]
    assert second == 200


def rates_cli(admin: str, *args: str, expect: int = 0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "rates_platform.cli", "keys", *args],
        env={"DATABASE_URL": admin, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == expect, done.stderr
    return done.stdout + done.stderr


def created(output: str) -> tuple[int, str]:
    fields = dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)
    return int(fields["id"]), fields["key"]


def test_api_keys_valid_unknown_revoked_expired_and_wrong_scope(fresh_db: PreparedDatabase) -> None:
    admin = fresh_db.migrator
    valid_id, valid = created(
        rates_cli(admin, "create", "--name", "partner", "--expires-in-days", "90")
    )
    _, limited = created(rates_cli(admin, "create", "--name", "small", "--rate-limit", "2/minute"))
    revoked_id, revoked = created(rates_cli(admin, "create", "--name", "gone"))
    expired_id, expired = created(
        rates_cli(admin, "create", "--name", "old", "--expires-in-days", "1")
    )
    _, other_scope = created(rates_cli(admin, "create", "--name", "x", "--scopes", "other:read"))
    rates_cli(admin, "revoke", str(revoked_id))
    rates_cli(admin, "revoke", "999999", expect=4)
    rates_cli(admin, "create", "--name", "bad", "--scopes", "not a scope", expect=2)
    listing = rates_cli(admin, "list")
    with psycopg.connect(fresh_db.admin, autocommit=True) as conn:  # time passes for one key
        conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = %s",
            (expired_id,),
        )
        stored = conn.execute("SELECT key_hash FROM api_keys WHERE id = %s", (valid_id,)).fetchone()
        audited = conn.execute(
            "SELECT event_type, target, details::text FROM audit.events"
            " WHERE event_type LIKE 'apikey.%' ORDER BY id"
        ).fetchall()
    # The API's role reads only what it needs.
    with psycopg.connect(fresh_db.app) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT name FROM api_keys")
    unknown = valid[:-4] + "AAAA"
    api = ApiServer(fresh_db.app, AUTH_MODE="api-key", LOG_LEVEL="DEBUG")
    try:
        ok = call(api, RATES, headers={"X-API-Key": valid})
        none = call(api, RATES)
        answers = {
            name: call(api, RATES, headers={"X-API-Key": key})
            for name, key in [
                ("unknown", unknown),
                ("junk", "not-a-key"),
                ("revoked", revoked),
                ("expired", expired),
                ("scope", other_scope),
            ]
        }
        own_limit = [call(api, RATES, headers={"X-API-Key": limited})[0] for _ in range(3)]
        hello = call(api, "/")
    finally:
        api.stop()
    log = api.output()
    assert ok[0] == 200
    assert hello[0] == 200  # only /rates needs a credential
    assert_problem(none, 401, "unauthenticated")
    assert none[1]["www-authenticate"].startswith('ApiKey realm="rates"')
    for name in ("unknown", "junk", "revoked", "expired"):
        assert_problem(answers[name], 401, "invalid-credentials")
        assert 'error="invalid_key"' in answers[name][1]["www-authenticate"]
    assert_problem(answers["scope"], 403, "insufficient-scope")
    assert (
        'error="insufficient_scope", scope="rates:read"' in answers["scope"][1]["www-authenticate"]
    )
    assert own_limit == [200, 200, 429]  # the key's own limit, with no RATE_LIMIT set
    assert stored is not None and valid.encode() not in bytes(stored[0])
    # Audited in the CLI's transaction: five creations and one revocation, by id.
    assert [event for event, _, _ in audited] == ["apikey.create"] * 5 + ["apikey.revoke"]
    assert audited[-1][1] == f"api-key:{revoked_id}"
    assert '"request"' in log  # the access log was captured
    for key in (valid, limited, revoked, expired, other_scope, unknown):
        secret = key.split("_", 2)[2]  # rk_<prefix>_<secret>: the secret may hold "_" too
        assert secret not in log
        assert secret not in listing
        assert all(secret not in details for _, _, details in audited)


class Jwks(http.server.BaseHTTPRequestHandler):
    """The tenant's discovery keys endpoint, as a local stand-in."""

    document: bytes = b""
    fetches = 0

    def do_GET(self) -> None:
        type(self).fetches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.document)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    Jwks.document = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}).encode()
    Jwks.fetches = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/discovery/v2.0/keys", key
    server.shutdown()


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_entra_tokens_against_a_local_jwks(
    sample_db: PreparedDatabase, jwks_server: tuple[str, rsa.RSAPrivateKey]
) -> None:
    url, key = jwks_server
    issuer, audience = "https://login.microsoftonline.com/tenant-id/v2.0", "api://rates-test"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    good = {"iss": issuer, "aud": audience, "exp": now + 600, "iat": now, "azp": "partner-app"}

    def token(claims: dict[str, Any], signer: rsa.RSAPrivateKey = key, kid: str = "k1") -> str:
        return jwt.encode(claims, signer, algorithm="RS256", headers={"kid": kid})

    tokens = {
        "valid": token({**good, "scp": "rates:read"}),
        "role": token({**good, "roles": ["rates:read"]}),
        "expired": token({**good, "scp": "rates:read", "exp": now - 120}),
        "audience": token({**good, "scp": "rates:read", "aud": "api://someone-else"}),
        "issuer": token({**good, "scp": "rates:read", "iss": "https://evil.example/v2.0"}),
        "none": b64({"alg": "none", "typ": "JWT", "kid": "k1"})
        + "."
        + b64({**good, "scp": "rates:read"})
        + ".",
        "kid": token({**good, "scp": "rates:read"}, other_key, kid="k2"),
        "forged": token({**good, "scp": "rates:read"}, other_key, kid="k1"),
        "scope": token({**good, "scp": "other:read"}),
    }
    api = ApiServer(
        sample_db.app,
        AUTH_MODE="entra",
        ENTRA_ISSUER=issuer,
        ENTRA_AUDIENCE=audience,
        ENTRA_JWKS_URL=url,
        WEB_WORKERS="2",
        LOG_LEVEL="DEBUG",
    )
    try:
        answers = {
            name: call(api, RATES, headers={"Authorization": f"Bearer {value}"})
            for name, value in tokens.items()
        }
        for _ in range(20):  # made-up key ids must not become JWKS fetches
            call(api, RATES, headers={"Authorization": f"Bearer {tokens['kid']}"})
        missing = call(api, RATES)
    finally:
        api.stop()
    log = api.output()
    assert answers["valid"][0] == 200
    assert answers["role"][0] == 200
    for name in ("expired", "audience", "issuer", "none", "kid", "forged"):
        assert_problem(answers[name], 401, "invalid-credentials")
        assert answers[name][1]["www-authenticate"] == 'Bearer realm="rates", error="invalid_token"'
    assert "expired" in answers["expired"][2]["detail"]
    assert "audience" in answers["audience"][2]["detail"]
    assert_problem(answers["scope"], 403, "insufficient-scope")
    assert_problem(missing, 401, "unauthenticated")
    assert missing[1]["www-authenticate"] == 'Bearer realm="rates"'
    assert Jwks.fetches <= 2  # once per worker: the refresh floor held
    for value in tokens.values():
        assert value.split(".")[1] not in log  # no token, nor its claims, in any line
