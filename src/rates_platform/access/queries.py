"""The workflow's SQL: calls of migration 0009's SECURITY DEFINER functions, nothing else.

The caller's login has no table privileges on schema access; each function decides
on session_user.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from rates_platform.access.errors import AccessError, NotAllowed, NotFound, WrongState

Row = dict[str, Any]

_REFUSALS: dict[type[Exception], type[AccessError]] = {
    pgerrors.InsufficientPrivilege: NotAllowed,
    pgerrors.UndefinedObject: NotFound,
    pgerrors.UndefinedFunction: NotFound,
    pgerrors.ObjectNotInPrerequisiteState: WrongState,
    pgerrors.SerializationFailure: WrongState,
    pgerrors.UniqueViolation: WrongState,
    pgerrors.DuplicateObject: WrongState,
    pgerrors.InvalidParameterValue: AccessError,
    pgerrors.CheckViolation: AccessError,
}


@contextmanager
def refusals() -> Iterator[None]:
    """The server's refusal as an AccessError with its one-line message."""
    try:
        yield
    except psycopg.Error as exc:
        for kind, refusal in _REFUSALS.items():
            if isinstance(exc, kind):
                message = exc.diag.message_primary or type(exc).__name__
                raise refusal(message.removeprefix("access: ")) from None
        raise


def _one(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> Row:
    with refusals(), conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(query, params).fetchone()
    if row is None:  # every function called here returns a row or raises
        raise NotFound("the database returned nothing")
    return row


def _all(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> list[Row]:
    with refusals(), conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(query, params).fetchall()


def add_person(
    conn: psycopg.Connection[Any],
    name: str,
    verifier: str | None,
    approver: bool,
    groups: list[str],
) -> None:
    _one(conn, "SELECT access.add_person(%s, %s, %s, %s)", (name, verifier, approver, groups))


def create_entra_principal(conn: psycopg.Connection[Any], name: str) -> None:
    """Azure only: an Entra ID user as a login with no password (pgaadauth extension)."""
    exists = conn.execute(
        "SELECT 1 FROM pg_proc WHERE proname = 'pgaadauth_create_principal'"
    ).fetchone()
    if exists is None:
        raise AccessError(
            "--entra needs Azure Database for PostgreSQL with Microsoft Entra "
            "authentication (pgaadauth_create_principal does not exist on this server)"
        )
    with refusals():
        conn.execute("SELECT * FROM pgaadauth_create_principal(%s, false, false)", (name,))


def remove_person(conn: psycopg.Connection[Any], name: str) -> int:
    ended: int = _one(conn, "SELECT access.remove_person(%s) AS ended", (name,))["ended"]
    return ended


def end_sessions_of(conn: psycopg.Connection[Any], login: str) -> int:
    """With the caller's own rights (the admin's pg_signal_backend): sessions that
    rates_access could not end, e.g. of an Entra principal it did not create."""
    pids = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
        (login,),
    ).fetchall()
    # One call per pid: never inside a WHERE clause the planner may evaluate first.
    return sum(
        bool(conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone() == (True,))
        for (pid,) in pids
    )


def people(conn: psycopg.Connection[Any]) -> list[Row]:
    return _all(conn, "SELECT * FROM access.list_people()")


def current_policy(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    policy: dict[str, dict[str, Any]] = _one(conn, "SELECT access.current_policy() AS policy", ())[
        "policy"
    ]
    return policy


def apply_policy(conn: psycopg.Connection[Any], document: dict[str, Any]) -> dict[str, Any]:
    diff: dict[str, Any] = _one(conn, "SELECT access.apply_policy(%s) AS diff", (Jsonb(document),))[
        "diff"
    ]
    return diff


def request(  # noqa: PLR0917 - the SQL function's own parameters, in its order
    conn: psycopg.Connection[Any],
    role: str,
    minutes: float,
    reason: str,
    emergency: bool,
    verifier: str,
) -> Row:
    return _one(
        conn,
        "SELECT * FROM access.request(%s, %s::numeric, %s, %s, %s)",
        (role, minutes, reason, emergency, verifier),
    )


def approve(conn: psycopg.Connection[Any], request_id: int) -> Row:
    return _one(conn, "SELECT * FROM access.approve(%s)", (request_id,))


def deny(conn: psycopg.Connection[Any], request_id: int, reason: str) -> Row:
    return _one(conn, "SELECT * FROM access.deny(%s, %s)", (request_id, reason))


def revoke(conn: psycopg.Connection[Any], request_id: int, reason: str) -> Row:
    return _one(conn, "SELECT * FROM access.revoke(%s, %s)", (request_id, reason))


def review(conn: psycopg.Connection[Any], request_id: int, note: str) -> Row:
    return _one(conn, "SELECT * FROM access.review(%s, %s)", (request_id, note))


def expire(conn: psycopg.Connection[Any]) -> list[Row]:
    return _all(conn, "SELECT * FROM access.expire()")


def sweep(conn: psycopg.Connection[Any]) -> int:
    ended: int = _one(conn, "SELECT access.sweep() AS ended", ())["ended"]
    return ended


def requests(
    conn: psycopg.Connection[Any],
    status: str | None = None,
    unreviewed: bool = False,
    since: datetime | None = None,
) -> list[Row]:
    return _all(conn, "SELECT * FROM access.requests_view(%s, %s, %s)", (status, unreviewed, since))
