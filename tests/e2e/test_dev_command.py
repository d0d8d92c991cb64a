"""`make run` (``rates dev``): a local server from nothing, data kept, Ctrl-C stops all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from rates_platform.devdb import EmbeddedPostgres
from tests.support import ROOT, free_port

pytestmark = pytest.mark.e2e
EXAMPLE = "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=EETLL"


def run_dev(data_dir: Path, pg_port: int, api_port: int) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rates_platform.cli",
            "dev",
            "--data-dir",
            str(data_dir),
            "--pg-port",
            str(pg_port),
        ],
        cwd=ROOT,
        env={**env, "PORT": str(api_port)},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        with contextlib.suppress(requests.RequestException):
            if requests.get(base + "/readyz", timeout=2).status_code == 200:
                return process, base
        time.sleep(0.2)
    process.kill()
    raise AssertionError("rates dev did not become ready")


def dbaccess_env(data_dir: Path) -> dict[str, str]:
    """The environment the README sources from .data/dbaccess.env."""
    env = dict(os.environ)
    for line in (data_dir / "dbaccess.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value.strip("'")
    return env


def dbaccess(data_dir: Path, *args: str) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "rates_platform.dbaccess.cli", *args],
        env=dbaccess_env(data_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    parsed: dict[str, str] = json.loads(result.stdout)
    return parsed


def interrupt(process: subprocess.Popen[str]) -> str:
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    output, _ = process.communicate(timeout=60)
    return output


def test_dev_serves_sample_data_keeps_it_and_stops_cleanly(tmp_path: Path) -> None:
    pg_port, api_port = free_port(), free_port()
    process, base = run_dev(tmp_path, pg_port, api_port)
    rates = requests.get(base + EXAMPLE, timeout=5).json()["rates"]
    assert len(rates) == 31
    assert rates[0] == {"day": "2021-01-31", "price": 1154.3333333333333, "count": 3}
    # The README's rotation, against the running service: it keeps answering.
    before = dbaccess(tmp_path, "status", "--json")["active_slot"]
    rotate = subprocess.run(
        [sys.executable, "-m", "rates_platform.dbaccess.cli", "rotate", "--now"],
        env=dbaccess_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert rotate.returncode == 0, rotate.stderr
    assert dbaccess(tmp_path, "status", "--json")["active_slot"] not in (before, None)
    assert requests.get(base + EXAMPLE, timeout=5).json()["rates"] == rates
    first_output = interrupt(process)
    assert "loaded sample data" in first_output
    assert not EmbeddedPostgres(tmp_path / "postgres", pg_port).running
    for private in ("secrets.enc", "secrets.enc.key", "dbaccess.env"):
        assert (tmp_path / private).stat().st_mode & 0o077 == 0, private

    process, base = run_dev(tmp_path, pg_port, api_port)
    assert requests.get(base + EXAMPLE, timeout=5).json()["rates"] == rates
    second_output = interrupt(process)
    assert "loaded sample data" not in second_output  # the data persisted
    assert process.returncode == 0, second_output
