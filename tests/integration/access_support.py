"""Servers, people and helpers for the access-request tests (integration, e2e, kill loop).

Each PostgreSQL version gets a server of its own (roles are cluster-wide) with one
database migrated by the Azure-shaped administrator, connection logging on, and the
one server-configuration grant statement attribution needs (see README).
"""

from __future__ import annotations

import itertools
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from rates_platform.access import domain
from rates_platform.access.notify import JsonLinesSink, Notifier
from rates_platform.access.service import AccessService
from rates_platform.dbaccess.secrets import new_password
from rates_platform.devdb import EmbeddedPostgres
from tests.support import PreparedDatabase, prepare_database, start_server

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = ROOT / "access-policy.toml"
ACCESS_SERVER_SETTINGS = {"log_connections": "on"}
_names = itertools.count(1)


@contextmanager
def access_server(version: int) -> Iterator[EmbeddedPostgres]:
    """A server of its own, outside pytest's temporary tree (whose modes pytest resets
    while the server, running as another system user, still needs to traverse it)."""
    with tempfile.TemporaryDirectory(prefix=f"access{version}-") as directory:
        server = start_server(Path(directory), ACCESS_SERVER_SETTINGS, version=str(version))
        try:
            yield server
        finally:
            server.stop()


def enable_statement_logging(server: EmbeddedPostgres) -> None:
    """Server configuration (superuser, once): rates_access may give each grant login
    log_statement = all. Azure's equivalent is pgaudit (see README)."""
    with psycopg.connect(server.superuser_conninfo(), autocommit=True) as conn:
        conn.execute("GRANT SET ON PARAMETER log_statement TO rates_access")


@dataclass(frozen=True)
class AccessDb:
    server: EmbeddedPostgres
    db: PreparedDatabase
    version: int

    @property
    def admin(self) -> str:
        """The Azure-shaped administrator that created and migrated the database."""
        return self.db.migrator or self.db.admin

    @property
    def superuser(self) -> str:
        return self.db.admin

    def login(self, user: str, password: str) -> str:
        return self.server.tcp_conninfo(user, password, self.db.name)

    def grant_login(self, user: str, pgpass: Path) -> str:
        """Conninfo of a grant login, its password read by libpq from the pgpass file."""
        return make_conninfo(
            host="127.0.0.1",
            port=self.server.port,
            user=user,
            dbname=self.db.name,
            passfile=str(pgpass),
        )


def prepare_access_db(server: EmbeddedPostgres, version: int, policy: bool = True) -> AccessDb:
    """The migrated database; with the repository's policy applied unless ``policy`` is
    False (the e2e test applies it through the CLI)."""
    db = prepare_database(server, "access")
    enable_statement_logging(server)
    access = AccessDb(server, db, version)
    if policy:
        rules = domain.parse_policy(tomllib.loads(POLICY_FILE.read_text()))
        service(access.admin, Path("/dev/null")).apply_policy(rules)
    return access


def service(conninfo: str, pgpass: Path, notify_file: Path | None = None) -> AccessService:
    sinks = [JsonLinesSink(notify_file)] if notify_file else []
    return AccessService(conninfo, Notifier(sinks, attempts=2, backoff=0.01), pgpass)


@dataclass(frozen=True)
class Person:
    name: str
    password: str
    conninfo: str
    pgpass: Path
    access: AccessService


def add_person(
    adb: AccessDb,
    tmp: Path,
    role: str,
    *,
    approver: bool = False,
    notify: Path | None = None,
    groups: tuple[str, ...] = (),
) -> Person:
    """A new person (unique across the cluster) with a password login and a pgpass file."""
    name = f"{role}{next(_names)}"
    password = new_password()
    service(adb.admin, Path("/dev/null")).add_person(
        name, approver=approver, groups=list(groups), password=password
    )
    pgpass = tmp / f"{name}.pgpass"
    conninfo = adb.login(name, password)
    return Person(name, password, conninfo, pgpass, service(conninfo, pgpass, notify))


def can_login(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def count_ports(conninfo: str) -> int:
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM ports").fetchone()
        assert row is not None
        return int(row[0])


def events_for(adb: AccessDb, request_id: int) -> list[tuple[str, str]]:
    """(event type, actor) of every audit row about a request, in chain order."""
    with psycopg.connect(adb.superuser) as conn:
        rows = conn.execute(
            "SELECT event_type, actor FROM audit.events "
            "WHERE details ->> 'request_id' = %s ORDER BY id",
            (str(request_id),),
        ).fetchall()
    return [(str(kind), str(actor)) for kind, actor in rows]
