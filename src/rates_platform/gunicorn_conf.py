"""Gunicorn settings derived from the service's own settings (``gunicorn -c python:...``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

# Workers must share one metrics directory, set before prometheus_client is imported.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="rates-metrics-")

import logging

import psycopg
from prometheus_client import multiprocess

from rates_platform.db import connect
from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event
from rates_platform.settings import Settings

_settings = Settings.from_env()

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers
threads = _settings.threads
worker_class = "gthread"
# One listening socket per worker (SO_REUSEPORT): the kernel spreads connections
# evenly, instead of one worker winning the accept race for most keep-alive clients.
reuse_port = True
wsgi_app = "rates_platform.app:create_app()"
graceful_timeout = 10
timeout = 30
keepalive = 5
accesslog = None  # the application writes one JSON line per request itself
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "rates_platform.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"level": _settings.log_level, "handlers": ["stdout"]},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False}},
}


def on_starting(server: Any) -> None:
    """Create the metrics directory, emptied: a previous run's files would count again."""
    metrics = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    metrics.mkdir(parents=True, exist_ok=True)
    for stale in metrics.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _audit(event: Event) -> None:
    """Audit the service starting or stopping; best effort, so an outage cannot keep
    the API from starting (or stopping), but a failure is logged."""
    try:
        with connect(_settings) as conn:
            audit.record(
                conn,
                event,
                "rates-api",
                details={"pid": os.getpid(), "bind": bind, "workers": workers},
            )
    except psycopg.Error as exc:
        logging.getLogger("rates_platform.audit").warning(
            "could not audit %s", event.value, extra={"error": type(exc).__name__}
        )


def when_ready(server: Any) -> None:
    _audit(Event.API_START)


def on_exit(server: Any) -> None:
    _audit(Event.API_STOP)
