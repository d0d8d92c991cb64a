"""The tamper-evident audit trail: append events, verify the hash chain against its
head and external anchors, read the head to anchor, tail as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from rates_platform.dbaccess import chain


class Event(StrEnum):
    """The closed vocabulary of audited operations (mirrored by a CHECK constraint);
    audit.event_writers binds each to the roles that may write it."""

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
    # Access requests (migration 0009): written only by rates_access' functions.
    USER_ADD = "user.add"
    USER_REMOVE = "user.remove"
    POLICY_CHANGE = "policy.change"
    ACCESS_REQUEST = "access.request"
    ACCESS_APPROVE = "access.approve"
    ACCESS_DENY = "access.deny"
    ACCESS_GRANT = "access.grant"
    ACCESS_EXPIRE = "access.expire"
    ACCESS_REVOKE = "access.revoke"
    ACCESS_EMERGENCY = "access.emergency"
    ACCESS_REVIEW = "access.review"
    ACCESS_DRIFT = "access.drift"
    # API keys (migration 0010): written by the administrator as rates_owner.
    APIKEY_CREATE = "apikey.create"
    APIKEY_REVOKE = "apikey.revoke"
    # The restore drill's read-only role (migration 0011): written as rates_owner.
    DRILL_GRANT = "drill.grant"


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


def _rows(conn: psycopg.Connection[Any]) -> Iterator[chain.Row]:
    with conn.cursor(name="audit_verify") as cursor:
        cursor.execute(
            "SELECT id, at, actor, event_type, target, outcome, details::text, prev_hash, hash "
            "FROM audit.events ORDER BY id"
        )
        for row in cursor:
            yield chain.Row(*row)


def head(conn: psycopg.Connection[Any]) -> chain.Anchor:
    """The chain head and the number of events (one statement: one snapshot), to anchor."""
    last_id, last_hash, rows = conn.execute(
        "SELECT last_id, last_hash, (SELECT count(*) FROM audit.events) FROM audit.chain_head"
    ).fetchone() or (0, chain.GENESIS, 0)
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return chain.Anchor(id=last_id, hash=last_hash, rows=rows, at=at)


def verify(
    conn: psycopg.Connection[Any], anchors: Sequence[chain.Anchor] = ()
) -> chain.Verification:
    """Recompute every hash in Python (from the stored fields, not with the SQL
    function) and check the chain against its head and every anchor, in one snapshot."""
    fresh = conn.info.transaction_status == TransactionStatus.IDLE
    with conn.transaction():
        if fresh:  # else the caller's transaction decides what it sees
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        last = conn.execute("SELECT last_id, last_hash FROM audit.chain_head").fetchone()
        formats = conn.execute("SELECT version, first_id FROM audit.hash_formats").fetchall()
        return chain.verify(_rows(conn), last or (0, chain.GENESIS), formats, anchors)


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


AUDITOR_GROUP = "rates_auditor"
DRILL_GROUP = "rates_dr_drill"


def grant_auditor(conn: psycopg.Connection[Any], principal: str) -> None:
    """Make ``principal`` a login of the read-only group that anchors and verifies.
    Idempotent; audited as a role change."""
    _grant_group(conn, principal, AUDITOR_GROUP, Event.ROLE_CHANGE)


def grant_drill(conn: psycopg.Connection[Any], principal: str) -> None:
    """Make ``principal`` a login of the restore drill's role: reads the rates and the
    audit tables, writes nothing, and is no policy role, so the access expiry job leaves
    it alone. Idempotent; audited as ``drill.grant``."""
    _grant_group(conn, principal, DRILL_GROUP, Event.DRILL_GRANT)


def _grant_group(conn: psycopg.Connection[Any], principal: str, group: str, event: Event) -> None:
    """In Azure the principal is a managed identity: created as an Entra ID principal
    (pgaadauth_create_principal, which only an Entra ID administrator may call); on other
    servers the login must exist already."""
    with conn.transaction():
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (principal,))
        if exists.fetchone() is None:
            entra = conn.execute(
                "SELECT to_regprocedure('pgaadauth_create_principal(text, boolean, boolean)')"
            ).fetchone()
            if entra is None or entra[0] is None:
                raise ValueError(f"no role {principal!r} (and no Entra ID principals here)")
            conn.execute("SELECT pgaadauth_create_principal(%s, false, false)", (principal,))
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(principal))
        )
        record(conn, event, principal, details={"granted": group})
