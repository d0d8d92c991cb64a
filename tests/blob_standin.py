"""A local stand-in for the Azure Blob Storage REST calls that AppendBlobSink makes.

Implements, over HTTPS with a throw-away certificate and a bearer token, on path-style
URLs (``https://127.0.0.1:PORT/ACCOUNT/CONTAINER/BLOB``, as Azurite serves them):
PUT (create an append blob, ``If-None-Match: *``), PUT ``?comp=appendblock`` (with
``x-ms-blob-condition-appendpos``) and GET (whole or ``x-ms-range``). As in a container
with a time-based retention policy that allows protected append writes, an existing
blob can only be appended to: overwriting it is refused with 409.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.keyvault_standin import TOKEN
from tests.tls import make_pki

VERSION = "2025-01-05"


class BlobStandIn:
    def __init__(self) -> None:
        self.blobs: dict[str, bytearray] = {}
        self.etags: dict[str, int] = {}
        self.requests: list[str] = []
        self.after_download: Callable[[str], None] | None = None  # another writer, racing

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append(f"{request.method} {request.full_path.rstrip('?')}")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            response = _error(401, "InvalidAuthenticationInfo", "no valid bearer token")
        else:
            response = self.route(request)
        response.headers["x-ms-version"] = VERSION
        response.headers["x-ms-request-id"] = "00000000-0000-0000-0000-000000000000"
        response.headers["Date"] = formatdate(usegmt=True)
        return response(environ, start_response)

    def _headers(self, name: str) -> dict[str, str]:
        return {
            "ETag": f'"0x{self.etags[name]:016X}"',
            "Last-Modified": formatdate(usegmt=True),
            "x-ms-blob-type": "AppendBlob",
        }

    def route(self, request: Request) -> Response:
        name = request.path
        if request.method == "PUT" and request.args.get("comp") == "appendblock":
            return self.append(request, name)
        if request.method == "PUT":
            return self.create(request, name)
        if request.method == "GET":
            response = self.download(request, name)
            if self.after_download is not None:
                self.after_download(name)
            return response
        return _error(405, "UnsupportedHttpVerb", "not supported here")

    def create(self, request: Request, name: str) -> Response:
        if request.headers.get("x-ms-blob-type") != "AppendBlob":
            return _error(400, "InvalidHeaderValue", "only append blobs here")
        if name in self.blobs:
            if request.headers.get("If-None-Match") == "*":
                return _error(409, "BlobAlreadyExists", "The specified blob already exists.")
            return _error(409, "BlobImmutableDueToPolicy", "This operation is not permitted")
        self.blobs[name], self.etags[name] = bytearray(), 1
        headers = {**self._headers(name), "x-ms-request-server-encrypted": "true"}
        return Response(status=201, headers=headers)

    def append(self, request: Request, name: str) -> Response:
        if name not in self.blobs:
            return _error(404, "BlobNotFound", "The specified blob does not exist.")
        blob = self.blobs[name]
        position = request.headers.get("x-ms-blob-condition-appendpos")
        if position is not None and int(position) != len(blob):
            message = "The append position condition specified was not met."
            return _error(412, "AppendPositionConditionNotMet", message)
        offset = len(blob)
        blob.extend(request.get_data())
        self.etags[name] += 1
        headers = {
            **self._headers(name),
            "x-ms-blob-append-offset": str(offset),
            "x-ms-blob-committed-block-count": str(self.etags[name] - 1),
            "x-ms-request-server-encrypted": "true",
        }
        return Response(status=201, headers=headers)

    def download(self, request: Request, name: str) -> Response:
        if name not in self.blobs:
            return _error(404, "BlobNotFound", "The specified blob does not exist.")
        data = bytes(self.blobs[name])
        headers = self._headers(name)
        wanted = request.headers.get("x-ms-range") or request.headers.get("Range")
        if not wanted:
            return Response(data, status=200, headers=headers)
        first, _, last = wanted.removeprefix("bytes=").partition("-")
        start = int(first)
        if start >= len(data):
            return _error(416, "InvalidRange", "The range specified is invalid.")
        end = min(int(last) if last else len(data) - 1, len(data) - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Response(data[start : end + 1], status=206, headers=headers)


def _error(status: int, code: str, message: str) -> Response:
    """Blob Storage's error: an XML body and the code in x-ms-error-code."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(
        body, status=status, mimetype="application/xml", headers={"x-ms-error-code": code}
    )


@contextmanager
def running_standin(directory: Path) -> Iterator[tuple[BlobStandIn, str, Path]]:
    """(the stand-in, its base URL, the CA file a client must trust)."""
    pki = make_pki(directory / "blob-pki", names=(), ips=("127.0.0.1",))
    app = BlobStandIn()
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, ssl_context=(str(pki.cert), str(pki.key))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"https://127.0.0.1:{server.server_port}", pki.ca
    finally:
        server.shutdown()
