"""JSON log lines: one object per line, for log shipping without parsing.

Kept apart from the metrics code, so the server's main process can load it without
initialising Prometheus client state.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any ``extra=`` fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # orjson: one line per request is on the hot path; str() anything it cannot encode.
        return orjson.dumps(entry, default=str).decode()


def skip_unshown_record_fields() -> None:
    """Stop log records collecting what the JSON lines never show: the caller's file and
    line (a stack walk per record), the thread and the process. These are the logging
    module's documented optimisations; they halve the cost of an access line."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def logging_config(level: str) -> dict[str, Any]:
    """dictConfig for every process of the server: JSON lines on stdout."""
    json_to_stdout = {"handlers": ["stdout"], "propagate": False}
    return {
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
        "root": {"level": level, "handlers": ["stdout"]},
        # The server's own loggers: lifecycle at INFO, never an access line (we log those).
        "loggers": {
            "_granian": {"level": "INFO", **json_to_stdout},
            "granian.access": {"level": "WARNING", **json_to_stdout},
        },
    }
