"""What `rates dev` (``make run``) does around the API: one instance per data directory,
the embedded PostgreSQL brought back if it dies, and everything stopped on Ctrl-C or
SIGTERM, leaving nothing behind outside the data directory.

Setting up the database is the caller's (``prepare``); this module owns the processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from rates_platform.devdb import EmbeddedPostgres

LOCK_FILE = "dev.lock"
METRICS_DIR = "metrics"
CHECK_INTERVAL = 0.5  # seconds between checks that PostgreSQL runs
MAX_RETRY_DELAY = 8.0  # seconds between attempts while PostgreSQL will not start
STOP_GRACE = 30.0  # seconds the server may take to stop before it is killed
ALREADY_RUNNING = 3  # exit status, as `dbaccess rotate`'s when another rotation runs


class AlreadyRunning(Exception):
    """Another `rates dev` holds the data directory."""


def _say(message: str) -> None:
    print(f"rates dev: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the data directory for as long as we run. The kernel drops a ``flock`` when
    its holder dies, so a lock file left by a killed run never blocks the next one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 20).decode(errors="replace").strip() or "unknown"
            raise AlreadyRunning(
                f"another `rates dev` (pid {holder}) is running on {data_dir.resolve()}; "
                "stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def run(
    data_dir: Path,
    server: EmbeddedPostgres | None,
    prepare: Callable[[], dict[str, str]],
    command: Sequence[str],
    server_settings: Mapping[str, str] | None = None,
) -> int:
    """Prepare the database, then serve with ``command`` until it exits or we are told
    to stop; ``server`` (None for an external database) is kept running meanwhile, with
    the ``server_settings`` ``prepare`` started it with, and stopped at the end. Returns
    the exit status."""
    try:
        with exclusive(data_dir):
            return _Supervisor(server, server_settings).run(data_dir, prepare, command)
    except AlreadyRunning as exc:
        _say(str(exc))
        return ALREADY_RUNNING


class _Supervisor:
    def __init__(self, server: EmbeddedPostgres | None, settings: Mapping[str, str] | None) -> None:
        self.server = server
        self.settings = settings
        self.child: subprocess.Popen[bytes] | None = None
        self.serving = False
        self.stop_signal: int | None = None
        self.failures = 0
        self.next_start = 0.0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        first = self.stop_signal is None
        self.stop_signal = self.stop_signal or signum
        if self.serving:
            if self.child is not None:
                self.child.send_signal(signal.SIGTERM)  # its graceful stop
        elif first:
            raise KeyboardInterrupt  # still setting up: unwind, then stop the database

    def run(
        self, data_dir: Path, prepare: Callable[[], dict[str, str]], command: Sequence[str]
    ) -> int:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in handled}
        metrics = None
        try:
            env = prepare()
            if not env.get("PROMETHEUS_MULTIPROC_DIR"):
                # The workers' shared metrics live with the data, not in /tmp; emptied,
                # since a previous run's files would count again.
                metrics = data_dir.resolve() / METRICS_DIR
                shutil.rmtree(metrics, ignore_errors=True)
                metrics.mkdir()
                env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
            return self._serve(command, env)
        except KeyboardInterrupt:
            return 128 + (self.stop_signal or signal.SIGINT)
        finally:
            self._stop_database()
            if metrics is not None:
                shutil.rmtree(metrics, ignore_errors=True)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _serve(self, command: Sequence[str], env: dict[str, str]) -> int:
        """Run the server in a process group of its own, so a Ctrl-C reaches it once, as
        our SIGTERM, and check the database while it runs."""
        self.serving = True
        self.child = subprocess.Popen(command, env=env, process_group=0)
        if self.stop_signal is not None:  # arrived while it was starting
            self.child.send_signal(signal.SIGTERM)
        kill_at = None
        while True:
            try:
                code = self.child.wait(timeout=CHECK_INTERVAL)
                break
            except subprocess.TimeoutExpired:
                pass
            if self.stop_signal is None:
                self._keep_database_up()
                continue
            kill_at = kill_at or time.monotonic() + STOP_GRACE
            if time.monotonic() > kill_at:
                _say(f"the server did not stop within {STOP_GRACE:.0f} s; killing it")
                self.child.kill()
        status = 128 - code if code < 0 else code  # a signal's death as a shell reports it
        if self.stop_signal is None:
            _say(f"the server exited with status {status}; stopping")
            return status
        return 0 if code in (0, -signal.SIGTERM) else status

    def _keep_database_up(self) -> None:
        server = self.server
        if server is None or time.monotonic() < self.next_start or server.running:
            return
        _say("PostgreSQL is not running; starting it again")
        began = time.monotonic()
        try:
            server.start(self.settings)
        except RuntimeError as exc:  # e.g. a killed server's backends still hold its memory
            if self.stop_signal is not None:  # the Ctrl-C reached pg_ctl too; we are stopping
                return
            self.failures += 1
            delay = min(CHECK_INTERVAL * 2**self.failures, MAX_RETRY_DELAY)
            self.next_start = time.monotonic() + delay
            reason = " / ".join(str(exc).splitlines())
            _say(f"PostgreSQL did not start ({reason}); retrying in {delay:.0f} s")
            return
        self.failures = 0
        _say(f"PostgreSQL is running again (started in {time.monotonic() - began:.1f} s)")

    def _stop_database(self) -> None:
        if self.server is not None and self.server.running:
            try:
                self.server.stop()
            except RuntimeError as exc:  # say so, without a traceback over it
                _say(f"could not stop PostgreSQL: {' / '.join(str(exc).splitlines())}")
