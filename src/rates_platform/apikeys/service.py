"""Use cases of API keys: the API's cached lookup, and the CLI's create/list/revoke."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from rates_platform.apikeys import domain, queries
from rates_platform.apikeys.domain import StoredKey
from rates_platform.apikeys.errors import KeyNotFound
from rates_platform.db import Database
from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event

# How long the API trusts what it read about a prefix (a revocation shows within it).
KEY_CACHE_TTL_SECONDS = 5.0
# Past this many cached prefixes the cache starts afresh: junk prefixes cannot grow it.
KEY_CACHE_MAX_ENTRIES = 10_000


class KeyLookup:
    """The API's view of keys: one indexed query per prefix per TTL, misses cached too,
    so a flood of one unknown key costs the database nothing."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._clock = clock
        self._cache: dict[str, tuple[float, StoredKey | None]] = {}

    def find(self, presented: str) -> StoredKey | None:
        """The usable key matching ``presented`` exactly, else None."""
        prefix = domain.prefix_of(presented)
        if prefix is None:
            return None
        now = self._clock()
        cached = self._cache.get(prefix)
        if cached is None or now - cached[0] >= KEY_CACHE_TTL_SECONDS:
            if len(self._cache) >= KEY_CACHE_MAX_ENTRIES:
                self._cache.clear()
            stored = self._db.read(lambda conn: queries.by_prefix(conn, prefix))
            cached = self._cache[prefix] = (now, stored)
        stored = cached[1]
        if stored is None or not domain.matches(stored, presented):
            return None
        return stored if stored.usable_at(datetime.now(UTC)) else None


def create(
    conn: psycopg.Connection[Any],
    name: str,
    scopes: list[str],
    rate_limit: str | None,
    expires_in_days: int | None,
) -> tuple[int, str]:
    """A new key's id and the key itself, which exists nowhere else: show it once.
    Audited in the same transaction (id, prefix, scopes; never the key)."""
    domain.check_new(name, scopes, rate_limit, expires_in_days)
    key = domain.new_key()
    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    key_id = queries.insert(
        conn, key, name=name, scopes=scopes, rate_limit=rate_limit, expires_at=expires_at
    )
    audit.record(
        conn,
        Event.APIKEY_CREATE,
        f"api-key:{key_id}",
        details={
            "prefix": key.prefix,
            "name": name,
            "scopes": scopes,
            "rate_limit": rate_limit,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return key_id, key.key


def listing(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return queries.listing(conn)


def revoke(conn: psycopg.Connection[Any], key_id: int) -> None:
    if not queries.revoke(conn, key_id):
        raise KeyNotFound(f"no API key has id {key_id}")
    audit.record(conn, Event.APIKEY_REVOKE, f"api-key:{key_id}")
