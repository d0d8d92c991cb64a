"""Credential rotation: a resumable state machine over two login slots.

    create  a new random password as a *pending* version, aimed at the inactive slot
    set     give that slot LOGIN and the password (as a SCRAM verifier), through
            rates_credentials' function, which audits it and bumps the slot's generation
    test    log in with it; proves the password for the generation it saw
    finish  pending becomes current; the old current becomes previous, and keeps
            working for a full grace period, after which a later run retires it

Every step re-checks what it relies on, because any run may have died anywhere and
the next one resumes from the store's tags:
- the slot a new password goes to must be free: if the previous credential is still in
  its grace period there, the run waits for the grace to end and retires it first, so
  a grace is never cut short;
- a retirement never touches a slot whose password a pending version has already set;
- finish requires a test of the slot's current generation: any change to the slot
  after the test (a retirement, an administrator) fails the version instead.
A failed version is never reused: its slot's login is disabled at once (unless a
working credential still lives there), and the next run starts from a new password.
Slots that log in but hold no credential the store knows (a lost or restored store)
are disabled (lost-store recovery).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

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

log = logging.getLogger(__name__)

# One rotation at a time per database, whatever the host: a table only the rotator may
# lock (migration 0012). Not an advisory lock: any login may take any of those, so the
# API's leaked login could hold it and stall every rotation.
ROTATION_LOCK = "LOCK TABLE credentials.rotation_lock IN EXCLUSIVE MODE NOWAIT"
ROTATOR_ROLE = "rates_rotator"
# A retirement ends the slot's sessions and checks that none remain, this many times.
RETIRE_ATTEMPTS = 5


class RotationBusy(RuntimeError):
    """Another rotation holds the lock."""


class RotationDeferred(RuntimeError):
    """Rotating now would cut the previous credential's grace short; nothing changed."""


class RotationFailed(RuntimeError):
    """A step failed; the pending version is marked failed and will not be reused."""


class _Stale(RuntimeError):
    """The slot changed after the step that proved the pending password."""


@dataclass(frozen=True)
class RotationPolicy:
    secret_name: str = "rates-db-app"  # noqa: S105 - a name, not a secret
    slots: tuple[str, str] = ("rates_app_a", "rates_app_b")
    period: timedelta = timedelta(days=30)
    # Longer than the API pool's connection lifetime plus its credential cache: no live
    # connection uses a slot when it is retired.
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
    failed: bool  # the last rotation failed and none has succeeded since
    previous_slot: str | None
    previous_retire_after: datetime | None


def login_conninfo(conninfo: str, login: dict[str, str]) -> str:
    """``conninfo`` with another login: host, TLS settings (sslrootcert...) kept."""
    params = {k: v for k, v in conninfo_to_dict(conninfo).items() if k not in ("user", "password")}
    return make_conninfo("", **params, **login)


def logs_in(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=10):
            return True
    except psycopg.OperationalError:
        return False


def generation(conn: psycopg.Connection[Any], role: str) -> int:
    row = conn.execute(
        "SELECT generation FROM credentials.changes WHERE role_name = %s", (role,)
    ).fetchone()
    if row is None:
        raise psycopg.errors.UndefinedObject(f"role {role} is not managed by rates_credentials")
    return int(row[0])


class Rotator:
    """Rotates the API's login on ``conninfo`` (the rotator's own login)."""

    def __init__(
        self,
        store: SecretStore,
        conninfo: str,
        policy: RotationPolicy,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_step: Callable[[str], None] = lambda _step: None,
        sleep: Callable[[float], None] = time.sleep,
        own_login: str | None = None,
        max_wait: float | None = None,
    ) -> None:
        self.store = store
        self.conninfo = conninfo
        self.policy = policy
        self.clock = clock
        # Called inside each step, after its effect and before it is recorded: the worst
        # moment to crash, which is what the crash tests do there.
        self.on_step = on_step
        self.sleep = sleep
        # The store entry of this rotator's own login, rotated too when it is as old as
        # the period (see rotate_own_login).
        self.own_login = own_login
        # The longest wait for a grace to end before a rotation gives up (None: no limit).
        self.max_wait = max_wait

    # -- reading state --------------------------------------------------------------

    def _stage(self, stage: str) -> SecretVersion | None:
        return with_stage(self.store, self.policy.secret_name, stage)

    def due(self) -> bool:
        current = self._stage(CURRENT)
        return current is None or self.clock() >= current.created_at + self.policy.period

    def status(self) -> Status:
        current, pending, previous = (self._stage(s) for s in (CURRENT, PENDING, PREVIOUS))
        now = self.clock()
        failed = bool(current and "failed_at" in current.tags)
        return Status(
            active_slot=current.value["username"] if current else None,
            current_since=current.created_at if current else None,
            next_due=current.created_at + self.policy.period if current else now,
            pending_step=pending.tags.get("step") if pending else None,
            pending_since=pending.created_at if pending else None,
            stuck=bool(pending and now - pending.created_at > self.policy.stuck_after),
            failed=failed,
            previous_slot=previous.value["username"] if previous else None,
            previous_retire_after=_retire_after(previous) if previous else None,
        )

    def _in_grace(self, previous: SecretVersion | None) -> SecretVersion | None:
        """The previous version if its login may still be in use (not yet retired)."""
        return previous if previous is not None and "retired" not in previous.tags else None

    # -- running ----------------------------------------------------------------------

    def run(self, *, force: bool) -> str:
        """Retire what is due, disable untracked logins, then rotate if due (or forced).

        Returns what was done; raises RotationBusy if another run holds the lock.
        """
        with self._exclusive(), psycopg.connect(self.conninfo, autocommit=True) as conn:
            self._settle_labels()
            retired = self._retire_expired(conn)
            retired |= self._retire_untracked(conn)
            pending, current = self._stage(PENDING), self._stage(CURRENT)
            broken = current is not None and not logs_in(
                login_conninfo(self.conninfo, current.login())
            )
            if force or broken or pending or self.due():
                self._rotate(conn, pending)
                done = "rotated"
            else:
                done = "retired an expired slot; rotation not due" if retired else "not due"
            if self.own_login and self.rotate_own_login(conn, self.own_login):
                done += "; rotated its own login"
            return done

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the rotation lock for the run: a transaction on a connection of its own,
        exempt from the rotator's idle-in-transaction timeout, which a crash ends too."""
        with psycopg.connect(self.conninfo) as lock:
            lock.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            try:
                lock.execute(ROTATION_LOCK)
            except psycopg.errors.LockNotAvailable:
                raise RotationBusy("another rotation is running; nothing was changed") from None
            try:
                yield
            finally:
                lock.rollback()

    def rotate_own_login(self, conn: psycopg.Connection[Any], name: str) -> bool:
        """Give the rotator's own login a new password when it is ``period`` old.

        One slot is enough here: only one run at a time holds the lock, no pool caches
        this login, a password change ends no session (this run's included), and the
        new password is in the store as *pending* before the server has it, so after a
        crash either the current or the pending version logs in (the command tries
        both) and the next run completes the change.
        """
        current, pending = (
            with_stage(self.store, name, CURRENT),
            with_stage(self.store, name, PENDING),
        )
        if current is None or current.value["username"] != ROTATOR_ROLE:
            return False
        if pending is None:
            if self.clock() < current.created_at + self.policy.period:
                return False
            valid_until = self._expiry(conn)
            pending = self.store.add_version(
                name,
                {"username": ROTATOR_ROLE, "password": new_password()},
                {PENDING},
                {"valid_until": valid_until.isoformat()},
            )
        verifier = scram_verifier(conn, ROTATOR_ROLE, pending.value["password"])
        try:
            conn.execute(
                "SELECT credentials.set_rotator_password(%s, %s)",
                (verifier, datetime.fromisoformat(pending.tags["valid_until"])),
            )
        except psycopg.Error as exc:
            raise RotationFailed(
                f"could not change the rotator's own password: {type(exc).__name__}"
            ) from None
        self.on_step("own-login")
        if not logs_in(login_conninfo(self.conninfo, pending.login())):
            raise RotationFailed("the rotator's new password does not log in; rerun")
        self.store.update(name, pending.version_id, {CURRENT}, pending.tags)
        self.store.update(name, current.version_id, set(), current.tags)
        return True

    def _rotate(self, conn: psycopg.Connection[Any], pending: SecretVersion | None) -> None:
        if pending is None:
            current = self._stage(CURRENT)
            active = current.value["username"] if current else None
            self._make_room(conn, next(s for s in self.policy.slots if s != active))
            pending = self._create(conn)
        try:
            if pending.tags.get("step") == "new":
                pending = self._audit_create(conn, pending)
            if pending.tags["step"] == "create":
                self._make_room(conn, pending.value["username"])
                pending = self._set(conn, pending)
            if pending.tags["step"] == "set":
                pending = self._test(conn, pending)
            self._check_finish(conn, pending)
        except (psycopg.Error, _Stale) as exc:
            self._fail(conn, pending, exc)
            raise RotationFailed(f"rotation step failed: {type(exc).__name__}") from None
        self._finish(conn, pending)

    def _mark(self, version: SecretVersion, stages: set[str], **tags: str) -> SecretVersion:
        merged = {**version.tags, **tags}
        self.store.update(self.policy.secret_name, version.version_id, stages, merged)
        return SecretVersion(
            version.version_id, version.created_at, version.value, frozenset(stages), merged
        )

    def _make_room(self, conn: psycopg.Connection[Any], slot: str) -> None:
        """Wait for the end of the grace of a previous credential on ``slot``; retire it."""
        previous = self._in_grace(self._stage(PREVIOUS))
        if previous is None or previous.value["username"] != slot:
            return
        wait = (_retire_after(previous) - self.clock()).total_seconds()
        if self.max_wait is not None and wait > self.max_wait:
            raise RotationDeferred(
                f"{slot} keeps its grace until {_retire_after(previous).isoformat()}: rotating"
                " now would cut it short; nothing was changed, rerun after it"
            )
        if wait > 0:
            log.info("waiting %.1f s for the grace of %s to end before reusing it", wait, slot)
            self.sleep(wait)
        self._retire(conn, previous)

    def _expiry(self, conn: psycopg.Connection[Any]) -> datetime:
        """A new password's VALID UNTIL, from the server's clock: the functions bound it by
        that clock (+ 1 minute), so a host clock a few minutes fast failed every `set`."""
        row = conn.execute("SELECT statement_timestamp()").fetchone()
        if row is None:
            raise RotationFailed("the server did not tell its time")
        server_now: datetime = row[0]
        return server_now + self.policy.lifetime

    def _create(self, conn: psycopg.Connection[Any]) -> SecretVersion:
        current = self._stage(CURRENT)
        active = current.value["username"] if current else None
        slot = next(s for s in self.policy.slots if s != active)
        valid_until = self._expiry(conn)
        return self.store.add_version(
            self.policy.secret_name,
            {"username": slot, "password": new_password()},
            {PENDING},
            {"step": "new", "valid_until": valid_until.isoformat()},
        )

    def _audit_create(self, conn: psycopg.Connection[Any], pending: SecretVersion) -> SecretVersion:
        """Recorded after the version exists (its id is the store's), before any use."""
        self.on_step("create")
        audit.record(
            conn,
            Event.ROTATION_CREATE,
            pending.value["username"],
            details={
                "version": pending.version_id,
                "valid_until": utc_literal(datetime.fromisoformat(pending.tags["valid_until"])),
            },
        )
        return self._mark(pending, {PENDING}, step="create")

    def _set(self, conn: psycopg.Connection[Any], pending: SecretVersion) -> SecretVersion:
        slot = pending.value["username"]
        valid_until = datetime.fromisoformat(pending.tags["valid_until"])
        verifier = scram_verifier(conn, slot, pending.value["password"])
        row = conn.execute(
            "SELECT credentials.set_password(%s, %s, %s, %s)",
            (slot, verifier, valid_until, pending.version_id),
        ).fetchone()
        self.on_step("set")
        return self._mark(pending, {PENDING}, step="set", set_generation=str(row[0] if row else ""))

    def _test(self, conn: psycopg.Connection[Any], pending: SecretVersion) -> SecretVersion:
        """Log in as the slot; valid only if the slot did not change since ``set``."""
        slot = pending.value["username"]
        before = generation(conn, slot)
        with psycopg.connect(
            login_conninfo(self.conninfo, pending.login()), connect_timeout=10, autocommit=True
        ) as login:
            login.execute("SELECT count(*) FROM ports").fetchone()
        after = generation(conn, slot)
        if not before == after == int(pending.tags["set_generation"]):
            raise _Stale(f"{slot} changed after its password was set")
        self.on_step("test")
        audit.record(
            conn,
            Event.ROTATION_TEST,
            slot,
            details={"version": pending.version_id, "generation": after},
        )
        return self._mark(pending, {PENDING}, step="test", tested_generation=str(after))

    def _check_finish(self, conn: psycopg.Connection[Any], pending: SecretVersion) -> None:
        """Finish only what was tested after the slot's last change, and still holds."""
        slot = pending.value["username"]
        current = self._stage(CURRENT)
        if current is not None and current.value["username"] == slot:
            raise _Stale(f"{slot} holds the current credential")
        if pending.tags.get("tested_generation") != str(generation(conn, slot)):
            raise _Stale(f"{slot} changed after its password was tested")
        row = conn.execute(
            "SELECT rolcanlogin, rolvaliduntil FROM pg_roles WHERE rolname = %s", (slot,)
        ).fetchone()
        intended = datetime.fromisoformat(pending.tags["valid_until"])
        if row is None or not row[0] or row[1] is None or abs(row[1] - intended) > _MS:
            raise _Stale(f"{slot}'s login is not the one tested")

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
        is completed here by the next one. The grace starts when the old version is
        relabelled, so it is never shorter than ``grace``.
        """
        name = self.policy.secret_name
        retire_after = (self.clock() + self.policy.grace).isoformat()
        currents = [v for v in self.store.versions(name) if CURRENT in v.stages]
        for older in currents[1:]:
            tags = {k: v for k, v in older.tags.items() if k not in ("failed_at", "retired")}
            self.store.update(
                name, older.version_id, {PREVIOUS}, {**tags, "retire_after": retire_after}
            )
        previous = [v for v in self.store.versions(name) if PREVIOUS in v.stages]
        for older in previous[1:]:
            self.store.update(name, older.version_id, set(), older.tags)

    def _fail(self, conn: psycopg.Connection[Any], pending: SecretVersion, exc: Exception) -> None:
        """Never reuse the version; take its password off the slot unless a working
        credential (the current, or a previous in grace not yet replaced) lives there."""
        slot = pending.value["username"]
        self._mark(pending, set(), step="failed")
        current, previous = self._stage(CURRENT), self._in_grace(self._stage(PREVIOUS))
        in_use = {current.value["username"]} if current else set()
        if previous is not None and pending.tags.get("step") in ("new", "create"):
            in_use.add(previous.value["username"])
        if slot not in in_use:
            try:
                conn.execute(
                    "SELECT credentials.disable_login(%s, 'failed', %s)", (slot, pending.version_id)
                )
            except psycopg.Error as disable_error:  # the next run's untracked check retries
                log.warning("could not disable %s: %s", slot, type(disable_error).__name__)
        audit.record(
            conn,
            Event.ROTATION_FAIL,
            slot,
            success=False,
            details={"version": pending.version_id, "error": type(exc).__name__},
        )
        if current is not None:
            self._mark(current, set(current.stages), failed_at=self.clock().isoformat())

    def _retire(self, conn: psycopg.Connection[Any], previous: SecretVersion) -> None:
        """Disable the login and commit, then end its sessions until none remain."""
        slot = previous.value["username"]
        conn.execute(
            "SELECT credentials.disable_login(%s, 'retired', %s)", (slot, previous.version_id)
        )
        self.on_step("retire")
        for _attempt in range(RETIRE_ATTEMPTS):
            conn.execute("SELECT credentials.end_sessions(%s)", (slot,))
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (slot,)
            ).fetchone()
            if left == (0,):
                break
            self.sleep(0.1)
        else:
            raise RotationFailed(f"sessions of {slot} survive its retirement; rerun")
        self._mark(previous, {PREVIOUS}, retired="yes")

    def _retire_expired(self, conn: psycopg.Connection[Any]) -> bool:
        previous = self._in_grace(self._stage(PREVIOUS))
        if previous is None or self.clock() < _retire_after(previous):
            return False
        slot = previous.value["username"]
        current, pending = self._stage(CURRENT), self._stage(PENDING)
        if current is not None and current.value["username"] == slot:
            self._mark(previous, {PREVIOUS}, retired="in use again")
            return False
        if (
            pending is not None
            and pending.value["username"] == slot
            and pending.tags.get("step") in ("set", "test")
        ):
            # A pending password already replaced it: retiring would disable that one.
            self._mark(previous, {PREVIOUS}, retired="replaced")
            return False
        self._retire(conn, previous)
        return True

    def _retire_untracked(self, conn: psycopg.Connection[Any]) -> bool:
        """Lost-store recovery: disable slots that log in with no credential the store
        still uses (neither current, nor previous in grace, nor pending)."""
        tracked = {
            v.value["username"]
            for v in (
                self._stage(CURRENT),
                self._stage(PENDING),
                self._in_grace(self._stage(PREVIOUS)),
            )
            if v is not None
        }
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) AND rolcanlogin",
            (list(self.policy.slots),),
        ).fetchall()
        untracked = [slot for (slot,) in rows if slot not in tracked]
        for slot in untracked:
            log.warning("%s logs in with a password the store does not hold: disabling", slot)
            conn.execute("SELECT credentials.disable_login(%s, 'untracked', '')", (slot,))
            conn.execute("SELECT credentials.end_sessions(%s)", (slot,))
        return bool(untracked)


_MS = timedelta(milliseconds=1)


def _retire_after(version: SecretVersion) -> datetime:
    return datetime.fromisoformat(version.tags["retire_after"])
