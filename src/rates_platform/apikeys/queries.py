"""SQL of the API-key capability, always parameterised."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from rates_platform.apikeys.domain import NewKey, StoredKey

_BY_PREFIX = (
    "SELECT id, prefix, key_hash, scopes, rate_limit, expires_at, revoked_at"
    " FROM api_keys WHERE prefix = %s"
)


def by_prefix(conn: psycopg.Connection[Any], prefix: str) -> StoredKey | None:
    row = conn.execute(_BY_PREFIX, (prefix,)).fetchone()
    if row is None:
        return None
    return StoredKey(row[0], row[1], bytes(row[2]), tuple(row[3]), row[4], row[5], row[6])


def insert(
    conn: psycopg.Connection[Any],
    key: NewKey,
    *,
    name: str,
    scopes: list[str],
    rate_limit: str | None,
    expires_at: datetime | None,
) -> int:
    row = conn.execute(
        "INSERT INTO api_keys (prefix, key_hash, name, scopes, rate_limit, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (key.prefix, key.key_hash, name, scopes, rate_limit, expires_at),
    ).fetchone()
    if row is None:  # INSERT ... RETURNING always returns its row
        raise RuntimeError("INSERT INTO api_keys returned no row")
    return int(row[0])


def listing(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, prefix, name, array_to_string(scopes, ','), rate_limit, created_at,"
        " expires_at, revoked_at FROM api_keys ORDER BY id"
    ).fetchall()


def revoke(conn: psycopg.Connection[Any], key_id: int) -> bool:
    """Revoke (idempotently); False if no key has that id."""
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s RETURNING id",
        (key_id,),
    ).fetchone()
    return row is not None
