"""Behave runs the documented examples over HTTP against a real server.

By default it starts the API as deployed (`rates serve`) on a real PostgreSQL with
the sample data; with RATES_BASE_URL set (e.g. http://127.0.0.1:3000 while `make
run` serves) it checks that server instead, which must hold the sample data.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import ApiServer, prepare_database, start_server


def before_all(context: Any) -> None:
    context.http = requests.Session()
    context.base = os.environ.get("RATES_BASE_URL", "").rstrip("/")
    if context.base:
        return
    context.tmp = tempfile.TemporaryDirectory(prefix="rates-behave-")
    context.server = start_server(Path(context.tmp.name))
    context.api = ApiServer(prepare_database(context.server, "rates").app)
    context.base = context.api.base


def after_all(context: Any) -> None:
    context.http.close()
    if "api" in context:
        context.api.stop()
        context.server.stop()
        context.tmp.cleanup()
