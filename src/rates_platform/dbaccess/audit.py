"""The tamper-evident audit trail: append events, verify the hash chain, tail as JSON."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

GENESIS = "0" * 64


class Event(StrEnum):
    """The closed vocabulary of audited operations (mirrored by a CHECK constraint)."""

    API_START = "api.start"
    API_STOP = "api.stop"
    DATA_LOAD = "data.load"
    ROTATION_CREATE = "rotation.create"
    ROTATION_SET = "rotation.set"
    ROTATION_TEST = "rotation.test"
    ROTATION_FINISH = "rotation.finish"
    ROTATION_RETIRE = "rotation.retire"
    ROTATION_FAIL = "rotation.fail"
    ROLE_CHANGE = "role.change"


def record(
    conn: psycopg.Connection[Any],
    event: Event,
    target: str,
    *,
    success: bool = True,
    details: Mapping[str, object] | None = None,
) -> None:
    """Append one event in the caller's transaction: if it cannot be written, neither is
    the change it records. ``details`` must never hold a secret."""
    conn.execute(
        "INSERT INTO audit.events (event_type, target, outcome, details) VALUES (%s, %s, %s, %s)",
        (event.value, target, "success" if success else "failure", Jsonb(dict(details or {}))),
    )


# The same text as audit.canonical(), rendered by the server from the stored row.
_ROWS = """
    SELECT id, prev_hash, hash,
           concat_ws('|', id::text,
                     to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                     actor, event_type, target, outcome, details::text)
    FROM audit.events ORDER BY id
"""


@dataclass(frozen=True)
class Verification:
    rows: int
    first_broken_id: int | None
    reason: str | None

    @property
    def intact(self) -> bool:
        return self.first_broken_id is None


def verify(conn: psycopg.Connection[Any]) -> Verification:
    """Recompute every hash in Python; name the first row whose chain does not hold."""
    expected_prev, count, last_id = GENESIS, 0, 0
    with conn.cursor(name="audit_verify") as cursor:
        cursor.execute(_ROWS)
        for event_id, prev_hash, stored_hash, canonical in cursor:
            count, last_id = count + 1, event_id
            if prev_hash != expected_prev:
                return Verification(count, event_id, "does not follow the previous row")
            digest = hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()
            if digest != stored_hash:
                return Verification(count, event_id, "content does not match its hash")
            expected_prev = stored_hash
    head = conn.execute("SELECT last_id, last_hash FROM audit.chain_head").fetchone()
    if head != (last_id, expected_prev):
        return Verification(count, last_id, "rows after this one were removed")
    return Verification(count, None, None)


def tail(conn: psycopg.Connection[Any], after_id: int = 0) -> Iterator[str]:
    """Events after ``after_id`` as JSON lines, for log shipping."""
    rows = conn.execute(
        "SELECT id, at, actor, event_type, target, outcome, details, hash "
        "FROM audit.events WHERE id > %s ORDER BY id",
        (after_id,),
    )
    for event_id, at, actor, event_type, target, outcome, details, digest in rows:
        yield json.dumps(
            {
                "id": event_id,
                "at": at.isoformat(),
                "actor": actor,
                "event": event_type,
                "target": target,
                "outcome": outcome,
                "details": details,
                "hash": digest,
            }
        )
