"""A local stand-in for the Azure Key Vault REST calls that KeyVaultStore makes.

Implements, over HTTPS with a throw-away certificate and Key Vault's bearer challenge:
PUT /secrets/{name}, GET /secrets/{name}/{version}, GET /secrets/{name}/versions and
PATCH /secrets/{name}/{version} (api-version 7.x shapes). Enough for the official SDK
to run unmodified against it; no cloud access needed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

TOKEN = "stand-in-token"  # noqa: S105 - a test token
CHALLENGE = (
    'Bearer authorization="https://login.microsoftonline.com/'
    '00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"'
)


class StandInCredential:
    """What DefaultAzureCredential is in Azure: here it hands out the stand-in's token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(TOKEN, int(time.time()) + 3600)


class KeyVaultStandIn:
    def __init__(self) -> None:
        self.secrets: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[str] = []
        self.base = ""

    def _bundle(self, name: str, item: dict[str, Any], with_value: bool) -> dict[str, Any]:
        bundle = {
            "id": f"{self.base}/secrets/{name}/{item['version']}",
            "attributes": item["attributes"],
            "tags": item["tags"],
            "contentType": item.get("contentType"),
        }
        if with_value:
            bundle["value"] = item["value"]
        return bundle

    def _find(self, name: str, version: str) -> dict[str, Any] | None:
        return next((i for i in self.secrets.get(name, []) if i["version"] == version), None)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append(f"{request.method} {request.path}")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            response = Response(status=401, headers={"WWW-Authenticate": CHALLENGE})
            return response(environ, start_response)
        parts = request.path.strip("/").split("/")
        status, body = self.route(request, parts)
        response = Response(json.dumps(body), status=status, mimetype="application/json")
        return response(environ, start_response)

    def route(self, request: Request, parts: list[str]) -> tuple[int, dict[str, Any]]:  # noqa: PLR0911
        not_found = (404, {"error": {"code": "SecretNotFound", "message": "not found"}})
        if len(parts) == 2 and parts[0] == "secrets" and request.method == "PUT":
            payload = request.get_json()
            now = int(time.time())
            item = {
                "version": uuid.uuid4().hex,
                "value": payload["value"],
                "tags": payload.get("tags") or {},
                "contentType": payload.get("contentType"),
                "attributes": {
                    "enabled": True,
                    "created": now,
                    "updated": now,
                    "recoveryLevel": "Recoverable+Purgeable",
                },
            }
            self.secrets.setdefault(parts[1], []).append(item)
            return 200, self._bundle(parts[1], item, with_value=True)
        if len(parts) == 3 and parts[2] == "versions" and request.method == "GET":
            if parts[1] not in self.secrets:
                return not_found
            return 200, {
                "value": [
                    self._bundle(parts[1], i, with_value=False) for i in self.secrets[parts[1]]
                ],
                "nextLink": None,
            }
        if len(parts) == 3 and parts[0] == "secrets":
            item = self._find(parts[1], parts[2])
            if item is None:
                return not_found
            if request.method == "GET":
                return 200, self._bundle(parts[1], item, with_value=True)
            if request.method == "PATCH":
                payload = request.get_json()
                if "tags" in payload:
                    item["tags"] = payload["tags"] or {}
                item["attributes"] = {
                    **item["attributes"],
                    **payload.get("attributes", {}),
                    "updated": int(time.time()),
                }
                return 200, self._bundle(parts[1], item, with_value=False)
        return 400, {"error": {"code": "BadParameter", "message": "not supported here"}}


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "vault.pem", directory / "vault.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def running_standin(directory: Path) -> Iterator[tuple[KeyVaultStandIn, str, Path]]:
    """(the stand-in, its vault URL, the CA file a client must trust)."""
    cert, key = _certificate(directory)
    app = KeyVaultStandIn()
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=(str(cert), str(key)))
    app.base = f"https://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, app.base, cert
    finally:
        server.shutdown()
