"""A local stand-in for the Azure Key Vault REST calls that KeyVaultStore makes.

Implements, over HTTPS with a throw-away certificate and Key Vault's bearer challenge:
PUT /secrets/{name}, GET /secrets/{name}/{version}, GET /secrets/{name}/versions and
PATCH /secrets/{name}/{version} (api-version 7.x shapes). Enough for the official SDK
to run unmodified against it; no cloud access needed.

Refusals are the real service's: reading a disabled version is 403 Forbidden (inner
code SecretDisabled), writing a name that is soft-deleted is 409 Conflict (inner code
ObjectIsDeletedButRecoverable), and a soft-deleted name has no versions (404).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.tls import make_pki

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
        self.deleted: dict[str, list[dict[str, Any]]] = {}  # soft-deleted, recoverable
        self.forbidden: set[str] = set()  # names the caller holds no role on (RBAC)
        self.after_listing: Callable[[str], None] | None = None  # another writer, racing
        self.requests: list[str] = []
        self.base = ""

    def _bundle(self, name: str, item: dict[str, Any], with_value: bool) -> dict[str, Any]:
        bundle = {
            "id": f"{self.base}/secrets/{name}/{item['version']}",
            "attributes": dict(item["attributes"]),
            "tags": dict(item["tags"]),
            "contentType": item.get("contentType"),
        }
        if with_value:
            bundle["value"] = item["value"]
        return bundle

    def soft_delete(self, name: str) -> None:
        """What `az keyvault secret delete` does in a vault with soft delete (always on)."""
        self.deleted[name] = self.secrets.pop(name)

    def _find(self, name: str, version: str) -> dict[str, Any] | None:
        return next((i for i in self.secrets.get(name, []) if i["version"] == version), None)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append(f"{request.method} {request.path}")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            response = Response(status=401, headers={"WWW-Authenticate": CHALLENGE})
            return response(environ, start_response)
        parts = request.path.strip("/").split("/")
        if len(parts) > 1 and parts[1] in self.forbidden:
            status, body = (
                403,
                _error(
                    "Forbidden",
                    "Caller is not authorized to perform action on resource.",
                    "ForbiddenByRbac",
                ),
            )
        else:
            status, body = self.route(request, parts)
        response = Response(json.dumps(body), status=status, mimetype="application/json")
        return response(environ, start_response)

    def route(self, request: Request, parts: list[str]) -> tuple[int, dict[str, Any]]:  # noqa: PLR0911
        not_found = (404, {"error": {"code": "SecretNotFound", "message": "not found"}})
        if len(parts) == 2 and parts[0] == "secrets" and request.method == "PUT":
            if parts[1] in self.deleted:
                return 409, _error(
                    "Conflict",
                    f"Secret {parts[1]} is currently in a deleted but recoverable state, and "
                    "its name cannot be reused; in this state, the secret can only be "
                    "recovered or purged.",
                    "ObjectIsDeletedButRecoverable",
                )
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
            listing = {
                "value": [
                    self._bundle(parts[1], i, with_value=False) for i in self.secrets[parts[1]]
                ],
                "nextLink": None,
            }
            if self.after_listing is not None:
                self.after_listing(parts[1])
            return 200, listing
        if len(parts) == 3 and parts[0] == "secrets":
            item = self._find(parts[1], parts[2])
            if item is None:
                return not_found
            if request.method == "GET":
                if not item["attributes"]["enabled"]:
                    return 403, _error(
                        "Forbidden",
                        "Operation get is not allowed on a disabled secret.",
                        "SecretDisabled",
                    )
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


def _error(code: str, message: str, inner: str) -> dict[str, Any]:
    """Key Vault's error body: a code, a message and the specific inner code."""
    return {"error": {"code": code, "message": message, "innererror": {"code": inner}}}


@contextmanager
def running_standin(directory: Path) -> Iterator[tuple[KeyVaultStandIn, str, Path]]:
    """(the stand-in, its vault URL, the CA file a client must trust)."""
    pki = make_pki(directory / "vault-pki", names=(), ips=("127.0.0.1",))
    app = KeyVaultStandIn()
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, ssl_context=(str(pki.cert), str(pki.key))
    )
    app.base = f"https://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, app.base, pki.ca
    finally:
        server.shutdown()
