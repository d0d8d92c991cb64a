"""scripts/smoke.py and scripts/loadtest.sh against a local stand-in of a deployed API:
smoke waits while the API reports not ready (a first deploy), and a proxy's HTML error
page is a failed check, not a crash; the load test passes a healthy API and fails on
errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.policy import policy

DAYS = [{"day": f"2021-01-{d:02d}", "price": 1.0, "count": 3} for d in range(31, 0, -1)]


class Api(BaseHTTPRequestHandler):
    not_ready_left = 0
    html_rates = False

    def log_message(self, *args: object) -> None:
        pass

    def send(self, status: int, body: object, kind: str = "application/json") -> None:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        problem = "application/problem+json"
        if self.path == "/healthz":
            self.send(200, {"status": "ok"})
        elif self.path == "/readyz":
            if Api.not_ready_left > 0:
                Api.not_ready_left -= 1
                self.send(503, {"status": "not ready"})
            else:
                self.send(200, {"status": "ready"})
        elif self.path.startswith("/rates") and Api.html_rates:
            self.send(502, "<html>Bad Gateway</html>", "text/html")
        elif self.path.startswith("/rates") and "NOPE1" in self.path:
            self.send(400, {"parameter": "orig_code"}, problem)
        elif self.path.startswith("/rates"):
            self.send(200, {"rates": DAYS})
        else:
            self.send(404, {"title": "Not Found"}, problem)


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # wrk closes connections mid-answer when its time is up


@pytest.fixture
def api() -> Iterator[str]:
    server = QuietServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    Api.not_ready_left, Api.html_rates = 0, False


def smoke(base: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(policy.ROOT / "scripts" / "smoke.py"), base, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_smoke_waits_for_readiness_then_passes(api: str) -> None:
    Api.not_ready_left = 2  # two 503s, as while the access job has not run yet
    result = smoke(api, "--sample-data", "--wait", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   /readyz is ready" in result.stdout
    assert Api.not_ready_left == 0


def test_smoke_fails_when_never_ready(api: str) -> None:
    Api.not_ready_left = 10**6
    result = smoke(api, "--wait", "0")
    assert result.returncode == 1
    assert "FAIL /readyz is ready" in result.stdout


def test_an_html_error_page_is_a_failed_check(api: str) -> None:
    Api.html_rates = True
    result = smoke(api, "--wait", "0")
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert "FAIL the documented example has 31 days" in result.stdout


def loadtest(base: str, p99_ms: str) -> subprocess.CompletedProcess[str]:
    """Two seconds; the stand-in is a thread-per-connection Python server, so its p99
    is no measure of the API: the latency gate is exercised with explicit limits."""
    return subprocess.run(
        [str(policy.ROOT / "scripts" / "loadtest.sh"), base],
        env={**os.environ, "DURATION": "2s", "P99_MS": p99_ms},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed: make system-packages")
def test_loadtest_passes_a_healthy_api(api: str) -> None:
    result = loadtest(api, "10000")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 errors, p99" in result.stdout


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed: make system-packages")
def test_loadtest_fails_on_errors(api: str) -> None:
    Api.html_rates = True  # every /rates answers 502
    result = loadtest(api, "10000")
    assert result.returncode == 1
    assert " 0 errors" not in result.stdout


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed: make system-packages")
def test_loadtest_fails_over_the_latency_limit(api: str) -> None:
    result = loadtest(api, "0.001")
    assert result.returncode == 1
    assert ", 0 errors, p99" in result.stdout
