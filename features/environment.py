"""Behave runs the documented examples against the app on a real PostgreSQL."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rates_platform.app import create_app
from rates_platform.settings import Settings
from tests.support import prepare_database, start_server


def before_all(context: Any) -> None:
    context.tmp = tempfile.TemporaryDirectory(prefix="rates-behave-")
    context.server = start_server(Path(context.tmp.name))
    database = prepare_database(context.server, "rates")
    context.admin = database.admin
    context.client = create_app(Settings(database_url=database.app)).test_client()


def after_all(context: Any) -> None:
    context.server.stop()
    context.tmp.cleanup()
