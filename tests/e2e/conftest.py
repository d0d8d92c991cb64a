from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rates_platform.devdb import EmbeddedPostgres
from tests.support import start_server


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A server of the test's own, since these tests stop and restart it."""
    server = start_server(tmp_path)
    yield server
    if server.running:
        server.stop()
