"""`rates serve`: the production HTTP server, granian, configured from the service's settings.

Granian's HTTP layer is Rust (hyper on tokio): connections, slow headers and idle
keep-alives cost no Python thread, so slow or silent clients cannot starve the
WSGI threads, and the framing work that gunicorn did in Python is gone from the hot
path. Each worker process builds its own app (``create_worker_app``), so each has its own
connection pool. The main process audits the start and the stop, owns the
directories the workers share (Prometheus multiprocess files, rate-limit counters),
and serves /metrics on the internal listener only (METRICS_HOST:METRICS_PORT).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.server import MPServer

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event
from rates_platform.http.ratelimit import DIRECTORY_VARIABLE as LIMITS_DIR_VARIABLE
from rates_platform.http.ratelimit import new_instance_directory
from rates_platform.logs import logging_config
from rates_platform.settings import Settings

METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Seconds a client may take to send its request headers; then the connection is closed.
HEADER_READ_TIMEOUT_MS = 5_000
# Request line and headers together; hyper answers 431 above it (and 414 for a URI
# over 64 KiB), with no body. The application answers 414 from 4 KiB of query string.
MAX_HEADER_BUFFER_BYTES = 128 * 1024
MAX_CONNECTIONS_PER_WORKER = 1024
# Workers still busy this long after a stop signal are killed.
WORKERS_KILL_TIMEOUT_SECONDS = 10

_log = logging.getLogger("rates_platform.serving")


def _audit(settings: Settings, event: Event) -> None:
    """Audit the service starting or stopping; best effort, so an outage cannot keep
    the API from starting (or stopping), but a failure is logged."""
    # Imported here, not at the top: rates_platform.db loads prometheus_client, which
    # must not be loaded before main() has set the workers' metrics directory.
    from rates_platform.db import connect  # noqa: PLC0415

    try:
        with connect(settings) as conn:
            audit.record(
                conn,
                event,
                "rates-api",
                details={
                    "pid": os.getpid(),
                    "bind": f"{settings.host}:{settings.port}",
                    "workers": settings.workers,
                },
            )
    except Exception as exc:  # the store or the database: neither may stop the server
        _log.warning("could not audit %s", event.value, extra={"error": type(exc).__name__})


def _metrics_dir() -> tuple[Path, bool]:
    """The workers' shared metrics directory, emptied; True if we made it (and remove it)."""
    configured = os.environ.get(METRICS_DIR_VARIABLE)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # a previous run's files would count again
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="rates-metrics-"))
    os.environ[METRICS_DIR_VARIABLE] = str(path)
    return path, True


def _limits_dir() -> Path:
    """A fresh directory for this instance's rate-limit counters, shared by its workers."""
    path = Path(new_instance_directory())
    os.environ[LIMITS_DIR_VARIABLE] = str(path)
    return path


def _serve_metrics(settings: Settings) -> None:
    """Every worker's metrics (summed from the shared directory) on the internal
    listener; not on the public one. A port in use is logged, not fatal: the API
    matters more than its metrics."""
    # Imported only now: prometheus_client picks its value store at import, and the
    # workers forked from this process must inherit the multiprocess one.
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server  # noqa: PLC0415

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        start_http_server(settings.metrics_port, settings.metrics_host, registry)
    except OSError as exc:
        _log.error(
            "metrics listener not started",
            extra={"error": type(exc).__name__, "port": settings.metrics_port},
        )


def build_server(settings: Settings) -> MPServer:
    """A granian server for the app factory, with the service's limits and timeouts.

    Worker processes (not free-threaded workers): each has its own interpreter, app
    and connection pool, as the GIL build of CPython wants.
    """
    return MPServer(
        "rates_platform.app:create_worker_app",
        factory=True,
        interface=Interfaces.WSGI,
        # HTTP/1.1 only: in "auto" mode granian waits for a connection's first bytes
        # (to tell HTTP/2 from 1.1) with no timeout, so connections that send nothing
        # were never closed and held their permits; 2,100 of them took the API down.
        # The ingress speaks HTTP/1.1 to the app.
        http=HTTPModes.http1,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        blocking_threads=settings.threads,
        # Open connections per worker (each holds a permit until it closes, idle or
        # not); beyond it the kernel's backlog queues them. Costs no thread.
        backpressure=MAX_CONNECTIONS_PER_WORKER,
        http1_settings=HTTP1Settings(
            header_read_timeout=HEADER_READ_TIMEOUT_MS,
            keep_alive=True,
            max_buffer_size=MAX_HEADER_BUFFER_BYTES,
        ),
        log_dictconfig=logging_config(settings.log_level),
        log_access=False,  # the application writes one JSON line per request itself
        respawn_failed_workers=True,
        workers_kill_timeout=WORKERS_KILL_TIMEOUT_SECONDS,
    )


def main() -> None:
    """Serve until SIGTERM or SIGINT; audit start and stop; leave no metrics files behind."""
    settings = Settings.from_env()
    metrics, ours = _metrics_dir()
    limits = _limits_dir()
    _serve_metrics(settings)
    server = build_server(settings)
    server.on_startup(lambda: _audit(settings, Event.API_START))
    server.on_shutdown(lambda: _audit(settings, Event.API_STOP))
    try:
        server.serve()
    finally:
        shutil.rmtree(limits, ignore_errors=True)
        if ours:
            shutil.rmtree(metrics, ignore_errors=True)


if __name__ == "__main__":
    main()
