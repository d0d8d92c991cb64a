"""`make run` (``rates dev``): a local server from nothing, data kept, Ctrl-C stops all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

import psycopg
import pytest
import requests

from rates_platform.devdb import EmbeddedPostgres
from tests.support import ROOT, free_port

pytestmark = pytest.mark.e2e
EXAMPLE = "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=EETLL"


def dev_command(data_dir: Path, pg_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rates_platform.cli",
        "dev",
        "--data-dir",
        str(data_dir),
        "--pg-port",
        str(pg_port),
    ]


def dev_env(api_port: int, **extra: str) -> dict[str, str]:
    """No database configured: `rates dev` starts its own."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    return {**env, "PORT": str(api_port), **extra}


def run_dev(
    data_dir: Path, pg_port: int, api_port: int, **extra_env: str
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        dev_command(data_dir, pg_port),
        cwd=ROOT,
        env=dev_env(api_port, **extra_env),
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


def terminate(process: subprocess.Popen[str]) -> str:
    process.terminate()  # `kill PID`: to `rates dev` alone, which stops the rest
    output, _ = process.communicate(timeout=60)
    return output


def test_dev_serves_sample_data_keeps_it_and_stops_cleanly(tmp_path: Path) -> None:
    pg_port, api_port = free_port(), free_port()
    process, base = run_dev(tmp_path, pg_port, api_port)
    rates = requests.get(base + EXAMPLE, timeout=5).json()["rates"]
    assert len(rates) == 31
    assert rates[0] == {"day": "2021-01-31", "price": 1154.3333333333333, "count": 3}
    # The behave scenarios, the original service's exact values included, as the README
    # runs them against `make run`.
    behave = subprocess.run(
        [sys.executable, "-m", "behave", "--format", "progress", "features"],
        cwd=ROOT,
        env={**os.environ, "RATES_BASE_URL": base},
        capture_output=True,
        text=True,
        check=False,
    )
    assert behave.returncode == 0, behave.stdout + behave.stderr
    assert " 0 failed" in behave.stdout and "0 skipped" in behave.stdout, behave.stdout
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
    assert "Traceback" not in first_output
    assert not EmbeddedPostgres(tmp_path / "postgres", pg_port).running
    for private in ("secrets.enc", "secrets.enc.key", "dbaccess.env"):
        assert (tmp_path / private).stat().st_mode & 0o077 == 0, private

    process, base = run_dev(tmp_path, pg_port, api_port)
    assert requests.get(base + EXAMPLE, timeout=5).json()["rates"] == rates
    second_output = terminate(process)
    assert "loaded sample data" not in second_output  # the data persisted
    assert process.returncode == 0, second_output
    assert "Traceback" not in second_output
    assert not EmbeddedPostgres(tmp_path / "postgres", pg_port).running


def postmaster_pid(server: EmbeddedPostgres) -> int:
    return int((server.datadir / "postmaster.pid").read_text().split()[0])


def command_line_settings(server: EmbeddedPostgres) -> set[tuple[str, str]]:
    with psycopg.connect(server.superuser_conninfo()) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE source = 'command line'"
        ).fetchall()
    return set(rows)


class OutputWatcher:
    """Collects a running process's output as it comes, so a test can wait for a line
    the way a person watching the terminal would."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._process = process
        self._lines: list[str] = []
        self._thread = threading.Thread(target=self._collect, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _collect(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.append(line)

    def wait_for(self, text: str, count: int, within: float) -> None:
        deadline = time.monotonic() + within
        while sum(text in line for line in list(self._lines)) < count:
            assert time.monotonic() < deadline, f"{text!r} not seen {count}x: {self.text}"
            time.sleep(0.05)

    @property
    def text(self) -> str:
        return "".join(self._lines)

    def interrupt(self) -> str:
        os.killpg(self._process.pid, signal.SIGINT)
        self._process.wait(timeout=60)
        self._thread.join(timeout=10)
        return self.text


def seconds_until_rates_answer(base: str, within: float) -> float:
    """How long until `/rates` answers 200 again; fails after ``within`` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        with contextlib.suppress(requests.RequestException):
            if requests.get(base + EXAMPLE, timeout=2).status_code == 200:
                return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"/rates did not answer 200 within {within} s")


def test_dev_revives_postgres_refuses_a_second_instance_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    data_dir, private_tmp = tmp_path / "data", tmp_path / "tmp"
    private_tmp.mkdir()
    shared_tmp = Path(tempfile.gettempdir())
    shared_before = set(os.listdir(shared_tmp))
    pg_port, api_port = free_port(), free_port()
    process, base = run_dev(data_dir, pg_port, api_port, TMPDIR=str(private_tmp))
    watcher = OutputWatcher(process)
    try:
        postgres = EmbeddedPostgres(data_dir / "postgres", pg_port)
        # The server's shared metrics live with the data, not in the temp dir.
        assert (data_dir / "metrics").is_dir()
        assert not list(private_tmp.glob("rates-metrics-*"))

        # A second `make run` on the same data, same ports: refused before touching anything.
        started = time.monotonic()
        second = subprocess.run(
            dev_command(data_dir, pg_port),
            cwd=ROOT,
            env=dev_env(api_port, TMPDIR=str(private_tmp)),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert time.monotonic() - started < 10
        assert second.returncode != 0
        lines = (second.stdout + second.stderr).strip().splitlines()
        assert len(lines) == 1, lines
        assert f"pid {process.pid}" in lines[0] and str(data_dir) in lines[0], lines[0]
        assert postgres.running
        assert requests.get(base + EXAMPLE, timeout=5).status_code == 200

        # PostgreSQL dies, as by a crash: an immediate shutdown, then a killed postmaster.
        settings = command_line_settings(postgres)
        first_pid = postmaster_pid(postgres)
        postgres.stop(mode="immediate", wait=False)  # `rates dev` may restart it at once
        assert seconds_until_rates_answer(base, within=10) < 10
        second_pid = postmaster_pid(postgres)
        assert second_pid != first_pid
        os.kill(second_pid, signal.SIGKILL)
        assert seconds_until_rates_answer(base, within=10) < 10
        assert postmaster_pid(postgres) not in (first_pid, second_pid)
        assert command_line_settings(postgres) == settings  # started again as `rates dev` did
        # PostgreSQL accepts connections a moment before pg_ctl sees it ready; a Ctrl-C in
        # that moment would (rightly) stop the restart, so wait for `rates dev` to report it.
        watcher.wait_for("PostgreSQL is running again", count=2, within=10)

        output = watcher.interrupt()
        assert process.returncode == 0, output
        assert "Traceback" not in output
        assert output.count("PostgreSQL is running again") == 2, output
        assert not postgres.running
        with pytest.raises(requests.ConnectionError):  # the server stopped too
            requests.get(base + "/healthz", timeout=2)
        assert list(private_tmp.iterdir()) == []
        # Nor in the shared one, for what ignores TMPDIR: PostgreSQL's socket and its lock
        # (named by our port; a rates-* directory there may be another process's).
        ours = (str(pg_port), str(api_port))
        new_entries = set(os.listdir(shared_tmp)) - shared_before
        assert {name for name in new_entries if any(mark in name for mark in ours)} == set()
        assert not (data_dir / "metrics").exists()

    finally:  # a failed assertion must not leave `rates dev` (or its database) running
        if process.poll() is None:
            process.terminate()  # its graceful stop, which stops PostgreSQL too
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def test_dev_interrupted_while_setting_up_stops_postgres_and_the_next_run_serves(
    tmp_path: Path,
) -> None:
    """Ctrl-C in the middle of initdb, as the new cluster first starts, and as the
    existing one starts: nothing keeps running, no traceback, and the run after that
    sets up what was missing and serves."""
    pg_port, api_port = free_port(), free_port()
    crash_points = (
        tmp_path / "postgres.initdb" / "PG_VERSION",  # devdb's staging directory
        tmp_path / "postgres" / "postmaster.pid",
        tmp_path / "postgres" / "postmaster.pid",
    )
    for marker in crash_points:
        process = subprocess.Popen(
            dev_command(tmp_path, pg_port),
            cwd=ROOT,
            env=dev_env(api_port),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None and time.monotonic() < deadline, marker
            time.sleep(0.005)
        output = interrupt(process)
        assert process.returncode in (0, 130), output
        assert "Traceback" not in output
        assert not EmbeddedPostgres(tmp_path / "postgres", pg_port).running
    process, base = run_dev(tmp_path, pg_port, api_port)
    assert len(requests.get(base + EXAMPLE, timeout=5).json()["rates"]) == 31
    output = interrupt(process)
    assert "Traceback" not in output
