"""First-run set-up of rotated access on a database the caller administers.

Gives the rotator role a login (its password kept in the store), then lets the
rotator create the API's first credential. Idempotent: a rerun changes nothing that
works, and repairs what does not (a recreated database, a lost store).
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event
from rates_platform.dbaccess.roles import scram_verifier
from rates_platform.dbaccess.rotation import RotationPolicy, Rotator
from rates_platform.dbaccess.secrets import CURRENT, SecretStore, new_password, with_stage

ROTATOR_ROLE = "rates_rotator"
# The store entry with the rotator's own login.
ROTATOR_LOGIN = "rates-db-rotator"


def _logs_in(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def ensure_rotator_login(admin: str, store: SecretStore, server: str) -> str:
    """The rotator's conninfo on ``server`` (host/port/dbname), creating its login."""
    login = with_stage(store, ROTATOR_LOGIN, CURRENT)
    if login is None:
        login = store.add_version(
            ROTATOR_LOGIN, {"username": ROTATOR_ROLE, "password": new_password()}, {CURRENT}, {}
        )
    conninfo = make_conninfo(server, **login.login())
    if not _logs_in(conninfo):
        with psycopg.connect(admin, autocommit=True) as conn, conn.transaction():
            verifier = scram_verifier(conn, ROTATOR_ROLE, login.value["password"])
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                    sql.Identifier(ROTATOR_ROLE), sql.Literal(verifier)
                )
            )
            audit.record(
                conn,
                Event.ROLE_CHANGE,
                ROTATOR_ROLE,
                details={"change": "login enabled", "by": "bootstrap"},
            )
    return conninfo


def configure_lifetime(admin: str, lifetime: timedelta) -> None:
    """The longest VALID UNTIL rates_credentials' functions accept from the rotator.

    The administrator acts as rates_credentials (migration 0008 lets it) for this one
    update: the rotator itself can read the setting but never change it.
    """
    with psycopg.connect(admin) as conn, conn.transaction():
        conn.execute("SET LOCAL ROLE rates_credentials")
        conn.execute("UPDATE credentials.settings SET max_lifetime = %s", (lifetime,))


def bootstrap(admin: str, store: SecretStore, server: str, policy: RotationPolicy) -> Rotator:
    """Make ``server`` reachable by the API through the store; return the rotator."""
    configure_lifetime(admin, policy.lifetime)
    rotator = Rotator(store, ensure_rotator_login(admin, store, server), policy)
    current = with_stage(store, policy.secret_name, CURRENT)
    works = current is not None and _logs_in(make_conninfo(server, **current.login()))
    rotator.run(force=not works)
    return rotator
