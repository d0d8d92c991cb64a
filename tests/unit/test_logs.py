"""JSON log lines: one object per line, extras at the top level, never a crash."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date

from rates_platform.logs import JsonFormatter


def record(**extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": "hi %s", "args": (1,)})
    made.__dict__.update(extra)
    return made


def test_one_json_object_with_extras_at_the_top_level() -> None:
    line = JsonFormatter().format(record(request_id="abc", status=200))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "hi 1"
    assert entry["level"] == "info" and entry["logger"] == "t"
    assert entry["request_id"] == "abc" and entry["status"] == 200
    assert entry["ts"].endswith("+00:00")


def test_values_json_cannot_hold_are_written_as_text() -> None:
    entry = json.loads(JsonFormatter().format(record(day=date(2021, 1, 2), odd={1, 2} - {1, 2})))
    assert entry["day"] == "2021-01-02"
    assert entry["odd"] == "set()"


def test_exceptions_are_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        made = record()
        made.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(made))
    assert "ValueError: boom" in entry["exception"]
