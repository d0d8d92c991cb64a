"""Credential rotation: a resumable, idempotent state machine over two login slots.

    create  a new random password as a *pending* version, aimed at the inactive slot
    set     give that slot LOGIN and the password (as a SCRAM verifier), audited in the
            same transaction
    test    log in with it
    finish  pending becomes current; the old current becomes previous, and keeps
            working for a grace period, after which a later run retires it

Each step records its completion on the pending version, so a run that crashed at any
point is resumed by the next one. A failed test marks the version failed: it is never
used again, and the next run starts from a new password.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event
from rates_platform.dbaccess.roles import scram_verifier
from rates_platform.dbaccess.secrets import (
    CURRENT,
    PENDING,
    PREVIOUS,
    SecretStore,
    SecretVersion,
    new_password,
    with_stage,
)

# pg_try_advisory_lock key: one rotation at a time per database, whatever the host.
ROTATION_LOCK = 0x5241_5445_524F_54  # "RATEROT"
STEPS = ("create", "set", "test", "finish")


class RotationBusy(RuntimeError):
    """Another rotation holds the lock."""


class RotationFailed(RuntimeError):
    """A step failed; the pending version is marked failed and will not be reused."""


@dataclass(frozen=True)
class RotationPolicy:
    secret_name: str = "rates-db-app"  # noqa: S105 - a name, not a secret
    slots: tuple[str, str] = ("rates_app_a", "rates_app_b")
    period: timedelta = timedelta(days=30)
    # Longer than the API pool's connection lifetime: no live connection uses a slot
    # when it is retired.
    grace: timedelta = timedelta(hours=1)
    # A credential lapses by itself if rotation stops for this long.
    lifetime: timedelta = timedelta(days=60)
    stuck_after: timedelta = timedelta(minutes=15)


def utc_literal(instant: datetime) -> str:
    """A timestamp with an explicit UTC offset: never read in the server's TimeZone."""
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


@dataclass(frozen=True)
class Status:
    active_slot: str | None
    current_since: datetime | None
    next_due: datetime | None
    pending_step: str | None
    pending_since: datetime | None
    stuck: bool
    previous_slot: str | None
    previous_retire_after: datetime | None


class Rotator:
    """Rotates the API's login on ``conninfo`` (the rotator's own login)."""

    def __init__(
        self,
        store: SecretStore,
        conninfo: str,
        policy: RotationPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_step: Callable[[str], None] = lambda _step: None,
    ) -> None:
        self.store = store
        self.conninfo = conninfo
        self.policy = policy
        self.clock = clock
        # Called inside each step, after its effect and before it is recorded: the worst
        # moment to crash, which is what the crash tests do there.
        self.on_step = on_step

    # -- reading state --------------------------------------------------------------

    def _stage(self, stage: str) -> SecretVersion | None:
        return with_stage(self.store, self.policy.secret_name, stage)

    def due(self) -> bool:
        current = self._stage(CURRENT)
        return current is None or self.clock() >= current.created_at + self.policy.period

    def status(self) -> Status:
        current, pending, previous = (self._stage(s) for s in (CURRENT, PENDING, PREVIOUS))
        now = self.clock()
        return Status(
            active_slot=current.value["username"] if current else None,
            current_since=current.created_at if current else None,
            next_due=current.created_at + self.policy.period if current else now,
            pending_step=pending.tags.get("step") if pending else None,
            pending_since=pending.created_at if pending else None,
            stuck=bool(pending and now - pending.created_at > self.policy.stuck_after),
            previous_slot=previous.value["username"] if previous else None,
            previous_retire_after=(
                datetime.fromisoformat(previous.tags["retire_after"])
                if previous and "retire_after" in previous.tags
                else None
            ),
        )

    # -- running ----------------------------------------------------------------------

    def run(self, *, force: bool) -> str:
        """Retire an expired previous slot, then rotate if due (or forced).

        Returns what was done; raises RotationBusy if another run holds the lock.
        """
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (ROTATION_LOCK,)).fetchone()
            if locked != (True,):
                raise RotationBusy("another rotation is running; nothing was changed")
            try:
                self._settle_labels()
                retired = self._retire_expired(conn)
                if not (force or self.due() or self._stage(PENDING)):
                    return "retired an expired slot; rotation not due" if retired else "not due"
                self._rotate(conn)
                return "rotated"
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ROTATION_LOCK,))

    def _rotate(self, conn: psycopg.Connection[Any]) -> None:
        pending = self._stage(PENDING) or self._create(conn)
        step = pending.tags.get("step", "create")
        try:
            if step == "create":
                pending = self._set(conn, pending)
            if pending.tags["step"] == "set":
                pending = self._test(conn, pending)
        except psycopg.Error as exc:
            self._fail(conn, pending, exc)
            raise RotationFailed(f"rotation step failed: {type(exc).__name__}") from None
        self._finish(conn, pending)

    def _mark(self, version: SecretVersion, stages: set[str], **tags: str) -> SecretVersion:
        merged = {**version.tags, **tags}
        self.store.update(self.policy.secret_name, version.version_id, stages, merged)
        return SecretVersion(
            version.version_id, version.created_at, version.value, frozenset(stages), merged
        )

    def _create(self, conn: psycopg.Connection[Any]) -> SecretVersion:
        current = self._stage(CURRENT)
        active = current.value["username"] if current else None
        slot = next(s for s in self.policy.slots if s != active)
        valid_until = self.clock() + self.policy.lifetime
        version = self.store.add_version(
            self.policy.secret_name,
            {"username": slot, "password": new_password()},
            {PENDING},
            {"step": "create", "valid_until": valid_until.isoformat()},
        )
        self.on_step("create")
        audit.record(
            conn,
            Event.ROTATION_CREATE,
            slot,
            details={"version": version.version_id, "valid_until": utc_literal(valid_until)},
        )
        return version

    def _set(self, conn: psycopg.Connection[Any], pending: SecretVersion) -> SecretVersion:
        slot = pending.value["username"]
        valid_until = datetime.fromisoformat(pending.tags["valid_until"])
        verifier = scram_verifier(conn, slot, pending.value["password"])
        with conn.transaction():
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {} VALID UNTIL {}").format(
                    sql.Identifier(slot),
                    sql.Literal(verifier),
                    sql.Literal(utc_literal(valid_until)),
                )
            )
            audit.record(
                conn,
                Event.ROTATION_SET,
                slot,
                details={"version": pending.version_id, "valid_until": utc_literal(valid_until)},
            )
        self.on_step("set")
        return self._mark(pending, {PENDING}, step="set")

    def _test(self, conn: psycopg.Connection[Any], pending: SecretVersion) -> SecretVersion:
        slot = pending.value["username"]
        params = conn.info.get_parameters()
        server = make_conninfo(
            host=conn.info.host,
            port=conn.info.port,
            dbname=params["dbname"],
            sslmode=params.get("sslmode", "prefer"),
        )
        with psycopg.connect(
            make_conninfo(server, **pending.login()), connect_timeout=10, autocommit=True
        ) as login:
            login.execute("SELECT count(*) FROM ports").fetchone()
        self.on_step("test")
        audit.record(conn, Event.ROTATION_TEST, slot, details={"version": pending.version_id})
        return self._mark(pending, {PENDING}, step="test")

    def _finish(self, conn: psycopg.Connection[Any], pending: SecretVersion) -> None:
        audit.record(
            conn,
            Event.ROTATION_FINISH,
            pending.value["username"],
            details={"version": pending.version_id},
        )
        self._mark(pending, {CURRENT}, step="finish")
        self.on_step("finish")
        self._settle_labels()

    def _settle_labels(self) -> None:
        """Keep one current (the newest) and one previous; idempotent.

        The new version is labelled current before the old one is relabelled, so a
        reader always finds a working credential, and a run that stopped in between
        is completed here by the next one.
        """
        name = self.policy.secret_name
        retire_after = (self.clock() + self.policy.grace).isoformat()
        currents = [v for v in self.store.versions(name) if CURRENT in v.stages]
        for older in currents[1:]:
            self._mark(older, {PREVIOUS}, retire_after=retire_after)
        previous = [v for v in self.store.versions(name) if PREVIOUS in v.stages]
        for older in previous[1:]:
            self.store.update(name, older.version_id, set(), older.tags)

    def _fail(self, conn: psycopg.Connection[Any], pending: SecretVersion, exc: Exception) -> None:
        self._mark(pending, set(), step="failed")
        audit.record(
            conn,
            Event.ROTATION_FAIL,
            pending.value["username"],
            success=False,
            details={"version": pending.version_id, "error": type(exc).__name__},
        )

    def _retire_expired(self, conn: psycopg.Connection[Any]) -> bool:
        previous, current = self._stage(PREVIOUS), self._stage(CURRENT)
        if previous is None or previous.tags.get("retired") == "yes":
            return False
        if self.clock() < datetime.fromisoformat(previous.tags["retire_after"]):
            return False
        slot = previous.value["username"]
        if current is not None and current.value["username"] == slot:
            return False  # the slot is in use again: nothing to retire
        with conn.transaction():
            conn.execute(sql.SQL("ALTER ROLE {} WITH NOLOGIN").format(sql.Identifier(slot)))
            ended = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s",
                (slot,),
            ).fetchone()
            audit.record(
                conn,
                Event.ROTATION_RETIRE,
                slot,
                details={
                    "version": previous.version_id,
                    "sessions_ended": ended[0] if ended else 0,
                },
            )
        self._mark(previous, {PREVIOUS}, retired="yes")
        return True
