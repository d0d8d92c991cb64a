"""Use cases of access requests, each acting as the caller's own database login.

The database decides (SECURITY DEFINER functions, migration 0009); this layer makes
the per-grant password on the requester's machine (only its SCRAM verifier leaves
it), ends sessions again after the deciding transaction committed, and notifies.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from rates_platform.access import domain, queries
from rates_platform.access.errors import NotFound
from rates_platform.access.notify import Notifier
from rates_platform.dbaccess.roles import scram_verifier
from rates_platform.dbaccess.secrets import new_password

log = logging.getLogger("rates_platform.access")
Row = queries.Row


def pgpass_path(env: dict[str, str] | None = None) -> Path:
    environment = os.environ if env is None else env
    return Path(environment.get("PGPASSFILE") or Path.home() / ".pgpass")


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def save_password(path: Path, conn: psycopg.Connection[Any], login: str, password: str) -> None:
    """Append the grant login's password to a libpq password file (0600), so the
    requester's tools log in as the grant without the password ever being shown."""
    info = conn.info
    host = info.host if not info.host.startswith("/") else "localhost"
    fields = (host, str(info.port), info.dbname, login, password)
    line = ":".join(_pgpass_field(field) for field in fields) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Requested:
    request: Row
    pgpass: Path


class AccessService:
    def __init__(self, conninfo: str, notifier: Notifier, pgpass: Path) -> None:
        self._conninfo = conninfo
        self._notifier = notifier
        self._pgpass = pgpass

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[Any]]:
        # Autocommit: each function call is its own transaction, committed on return.
        with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
            yield conn

    # People (access admins only; the database checks).

    def add_person(
        self,
        name: str,
        *,
        approver: bool,
        groups: list[str],
        password: str | None,
        entra: bool = False,
    ) -> None:
        domain.person_name(name)
        group_list = domain.group_names(groups)
        with self._connect() as conn:
            if entra:
                queries.create_entra_principal(conn, name)
                verifier = None
            else:
                verifier = scram_verifier(conn, name, password or new_password())
            queries.add_person(conn, name, verifier, approver, group_list)
        self._notifier.notify("user.add", person=name, approver=approver, groups=group_list)

    def remove_person(self, name: str) -> int:
        with self._connect() as conn:
            ended = queries.remove_person(conn, name)
            ended += queries.end_sessions_of(conn, name) + queries.sweep(conn)
        self._notifier.notify("user.remove", person=name, sessions_ended=ended)
        return ended

    def people(self) -> list[Row]:
        with self._connect() as conn:
            return queries.people(conn)

    # Policy.

    def policy_changes(self, policy: dict[str, domain.RolePolicy]) -> list[str]:
        with self._connect() as conn:
            return domain.policy_diff(queries.current_policy(conn), domain.policy_document(policy))

    def apply_policy(self, policy: dict[str, domain.RolePolicy]) -> list[str]:
        with self._connect() as conn:
            before = queries.current_policy(conn)
            queries.apply_policy(conn, domain.policy_document(policy))
            changes = domain.policy_diff(before, queries.current_policy(conn))
        if changes:
            self._notifier.notify("policy.change", changes=changes)
        return changes

    # The workflow (any person; the database applies the rules to session_user).

    def request(self, role: str, minutes: float, reason: str, emergency: bool) -> Row:
        password = new_password()
        with self._connect() as conn:
            # SCRAM verifiers do not depend on the role name, which needs the request id.
            verifier = scram_verifier(conn, "grant", password)
            row = queries.request(conn, role, minutes, reason, emergency, verifier)
            login = f"{row['requester']}_r{row['id']}"
            save_password(self._pgpass, conn, login, password)
        event = "access.emergency" if emergency else "access.request"
        self._notifier.notify(event, **_summary(row))
        return row

    def approve(self, request_id: int) -> Row:
        with self._connect() as conn:
            row = queries.approve(conn, request_id)
        self._notifier.notify(
            "access.grant" if row["status"] == "granted" else "access.approve", **_summary(row)
        )
        return row

    def deny(self, request_id: int, reason: str) -> Row:
        with self._connect() as conn:
            row = queries.deny(conn, request_id, reason)
        self._notifier.notify("access.deny", **_summary(row))
        return row

    def revoke(self, request_id: int, reason: str) -> Row:
        with self._connect() as conn:
            row = queries.revoke(conn, request_id, reason)
            # A session that logged in while the revoking transaction ran ends now.
            queries.sweep(conn)
        self._notifier.notify("access.revoke", **_summary(row))
        return row

    def review(self, request_id: int, note: str) -> Row:
        with self._connect() as conn:
            row = queries.review(conn, request_id, note)
        self._notifier.notify("access.review", **_summary(row))
        return row

    def expire(self) -> list[Row]:
        """The job: end what is due, end stray sessions, alert on what needs eyes."""
        with self._connect() as conn:
            events = queries.expire(conn)
            queries.sweep(conn)
        for event in events:
            kind = event["kind"]
            if kind in ("overdue", "drift"):
                log.warning(
                    "access.%s request=%s person=%s role=%s login=%s overdue_seconds=%s",
                    kind,
                    event["request_id"],
                    event["person"],
                    event["role_name"],
                    event["login_name"],
                    event["overdue_seconds"],
                )
            self._notifier.notify(
                f"access.{kind}", **{k: v for k, v in event.items() if k != "kind"}
            )
        return events

    def requests(
        self, status: str | None = None, unreviewed: bool = False, since: datetime | None = None
    ) -> list[Row]:
        with self._connect() as conn:
            return queries.requests(conn, status, unreviewed, since)

    def show(self, request_id: int) -> Row:
        for row in self.requests():
            if row["id"] == request_id:
                return row
        raise NotFound(f"no request {request_id}")

    def alert_unreviewed(self) -> list[Row]:
        """The daily job: every emergency grant nobody has reviewed yet, alerted."""
        rows = self.requests(unreviewed=True)
        for row in rows:
            log.warning(
                "access.unreviewed request=%s person=%s role=%s",
                row["id"],
                row["requester"],
                row["role_name"],
            )
            self._notifier.notify("access.unreviewed", **_summary(row))
        return rows

    def activity(self, request_id: int, server_log: Path) -> list[domain.Statement]:
        row = self.show(request_id)
        if row["login_name"] is None:
            return []
        with server_log.open(encoding="utf-8", errors="replace") as lines:
            return domain.statements_of(lines, row["login_name"])

    @property
    def notification_failures(self) -> dict[str, int]:
        return dict(self._notifier.failures)


def _summary(row: Row) -> dict[str, Any]:
    keys = (
        "id",
        "requester",
        "role_name",
        "minutes",
        "reason",
        "emergency",
        "status",
        "ends_at",
        "login_name",
    )
    return {key: row.get(key) for key in keys}


# What `make run`'s embedded server starts with, so `access activity` can attribute
# each logged statement to the grant login that ran it.
LOCAL_SERVER_SETTINGS = {"log_connections": "on"}


def configure_local_server(superuser: str, policy_file: Path) -> list[str]:
    """The local server's share of the set-up (superuser, once per start): rates_access
    may turn on log_statement for each grant login (Azure: pgaudit), and the repository's
    policy is applied if the file exists. Returns the policy changes."""
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute("GRANT SET ON PARAMETER log_statement TO rates_access")
    if not policy_file.exists():
        return []
    policy = domain.parse_policy(tomllib.loads(policy_file.read_text(encoding="utf-8")))
    return AccessService(superuser, Notifier([]), Path(os.devnull)).apply_policy(policy)
