"""Bad configuration stops the commands at start with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PORT", "http"), ("WEB_WORKERS", "0"), ("DB_SECRET_STORE", "s3://nope")],
)
def test_serve_refuses_bad_settings_in_one_line(variable: str, value: str) -> None:
    env = {**os.environ, "DATABASE_URL": "host=127.0.0.1 dbname=rates", variable: value}
    result = subprocess.run(
        [sys.executable, "-m", "rates_platform.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"rates: configuration error: {variable}=")


def test_serve_without_a_database_says_what_to_set() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PG") and not k.startswith("DATABASE_URL")
    }
    result = subprocess.run(
        [sys.executable, "-m", "rates_platform.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "set DATABASE_URL" in result.stderr
