"""Login roles that carry the application group's privileges and own nothing.

Passwords reach PostgreSQL only as SCRAM-SHA-256 verifiers computed client-side,
so no server log (even with log_statement=all) can ever contain one.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

APP_GROUP = "rates_app"


def scram_verifier(conn: psycopg.Connection[Any], role: str, password: str) -> str:
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    return verifier.decode()


def ensure_login_member(
    conn: psycopg.Connection[Any], role: str, password: str, group: str = APP_GROUP
) -> None:
    """Create or update ``role`` as a LOGIN member of ``group`` with ``password``."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = sql.SQL("ALTER" if exists else "CREATE")
    conn.execute(
        sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
            verb, sql.Identifier(role), sql.Literal(scram_verifier(conn, role, password))
        )
    )
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role)))
