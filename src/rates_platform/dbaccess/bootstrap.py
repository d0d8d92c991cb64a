"""First-run set-up of rotated access on a database the caller administers.

Gives the rotator role a login (its password kept in the store), then lets the
rotator create the API's first credential. Idempotent: a rerun changes nothing that
works, and repairs what does not (a recreated database, a lost store).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event
from rates_platform.dbaccess.roles import scram_verifier
from rates_platform.dbaccess.rotation import (
    ROTATOR_ROLE,
    RotationPolicy,
    Rotator,
    logs_in,
    utc_literal,
)
from rates_platform.dbaccess.secrets import CURRENT, SecretStore, new_password, with_stage

# The store entry with the rotator's own login.
ROTATOR_LOGIN = "rates-db-rotator"


def ensure_rotator_login(admin: str, store: SecretStore, server: str, lifetime: timedelta) -> str:
    """The rotator's conninfo on ``server`` (host/port/dbname), creating its login.

    Its password lapses after ``lifetime`` like the API's: `dbaccess rotate` renews it
    (Rotator.rotate_own_login), or a rerun of bootstrap does.
    """
    login = with_stage(store, ROTATOR_LOGIN, CURRENT)
    if login is None:
        valid_until = datetime.now(UTC) + lifetime
        login = store.add_version(
            ROTATOR_LOGIN,
            {"username": ROTATOR_ROLE, "password": new_password()},
            {CURRENT},
            {"valid_until": valid_until.isoformat()},
        )
    conninfo = make_conninfo(server, **login.login())
    if not logs_in(conninfo):
        valid_until = datetime.now(UTC) + lifetime
        with psycopg.connect(admin, autocommit=True) as conn, conn.transaction():
            verifier = scram_verifier(conn, ROTATOR_ROLE, login.value["password"])
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {} VALID UNTIL {}").format(
                    sql.Identifier(ROTATOR_ROLE),
                    sql.Literal(verifier),
                    sql.Literal(utc_literal(valid_until)),
                )
            )
            store.update(
                ROTATOR_LOGIN,
                login.version_id,
                {CURRENT},
                {**login.tags, "valid_until": valid_until.isoformat()},
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
    conninfo = ensure_rotator_login(admin, store, server, policy.lifetime)
    rotator = Rotator(store, conninfo, policy, own_login=ROTATOR_LOGIN)
    current = with_stage(store, policy.secret_name, CURRENT)
    works = current is not None and logs_in(make_conninfo(server, **current.login()))
    rotator.run(force=not works)
    return rotator
