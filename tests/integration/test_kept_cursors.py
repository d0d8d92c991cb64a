"""Database.rows keeps a cursor per pooled connection, and lets closed ones go."""

from __future__ import annotations

import gc
import logging
import weakref
from typing import Any

import psycopg
import pytest

from rates_platform.db import Database, Outage, make_pool
from tests.conftest import settings_for
from tests.support import PreparedDatabase


def _close_the_pooled_connection(database: Database) -> weakref.ref[psycopg.Connection[Any]]:
    """End the pool's connection as max_lifetime or a lost server would; the pool
    replaces it."""
    with database.connection() as conn:
        conn.close()
        return weakref.ref(conn)


def test_closed_connections_are_not_kept_alive(
    sample_db: PreparedDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pool's "discarding closed connection" records hold the connection, and pytest
    # keeps every record of a test.
    monkeypatch.setattr(logging.getLogger("psycopg.pool"), "disabled", True)
    settings = settings_for(sample_db.app, pool_max_size=1)
    outage = Outage()
    pool = make_pool(settings, outage=outage)
    pool.open(wait=True)
    database = Database(pool, outage, settings.pool_timeout, settings.statement_timeout)
    try:
        closed = []
        for n in range(5):
            assert database.rows("SELECT %(n)s::int", {"n": n}) == [(n,)]
            closed.append(_close_the_pooled_connection(database))
        assert database.rows("SELECT %(n)s::int", {"n": 5}) == [(5,)]
        gc.collect()
        assert [ref() for ref in closed] == [None] * 5
    finally:
        pool.close()
