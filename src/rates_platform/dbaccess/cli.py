"""The ``dbaccess`` command: rotate the API's login, show its status, check the audit trail.

Configuration (environment):
  DATABASE_URL / PG*        where to connect, as the rotator (or an auditor)
  DB_SECRET_STORE           file:PATH or keyvault:https://VAULT
  DB_SECRET_NAME            the API's rotated login (default rates-db-app)
  DBACCESS_LOGIN     optional: a secret in the store with this command's own login
  ROTATION_PERIOD_DAYS      default 30
  ROTATION_GRACE_SECONDS    default 3600 (checked: more than DB_POOL_MAX_LIFETIME +
                            DB_CREDENTIAL_TTL, defaults 1800 and 2)
  CREDENTIAL_LIFETIME_DAYS  default 60 (VALID UNTIL of each new password; checked: more
                            than ROTATION_PERIOD_DAYS + ROTATION_GRACE_SECONDS)
  AUDIT_ANCHORS             file:PATH or blob:https://..., where `audit anchor` appends
                            and `audit verify --anchors` checks
`status` exits 4 when the last rotation failed or one is stuck.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rates_platform.access import cli as access_cli
from rates_platform.dbaccess import audit
from rates_platform.dbaccess.anchors import AnchorError, AnchorSink, open_sink
from rates_platform.dbaccess.bootstrap import bootstrap
from rates_platform.dbaccess.rotation import (
    RotationBusy,
    RotationDeferred,
    RotationFailed,
    RotationPolicy,
    Rotator,
    Status,
    logs_in,
)
from rates_platform.dbaccess.secrets import (
    CURRENT,
    PENDING,
    SecretStore,
    SecretStoreError,
    with_stage,
)
from rates_platform.dbaccess.stores import open_store
from rates_platform.settings import Settings, SettingsError, check_rotation_grace

EXIT_BUSY, EXIT_FAILED, EXIT_BROKEN_CHAIN = 3, 4, 5


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not valid: expected a positive number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} is not valid: expected a positive number")
    return value


def policy_from_env(env: Mapping[str, str]) -> RotationPolicy:
    """The rotation's settings, checked against each other and the API pool's."""
    defaults = RotationPolicy()
    policy = RotationPolicy(
        secret_name=env.get("DB_SECRET_NAME") or defaults.secret_name,
        period=timedelta(days=_number(env, "ROTATION_PERIOD_DAYS", 30)),
        grace=timedelta(seconds=_number(env, "ROTATION_GRACE_SECONDS", 3600)),
        lifetime=timedelta(days=_number(env, "CREDENTIAL_LIFETIME_DAYS", 60)),
    )
    if policy.lifetime <= policy.period + policy.grace:
        raise SettingsError(
            f"CREDENTIAL_LIFETIME_DAYS={policy.lifetime.total_seconds() / 86400:g} is not "
            "valid: expected more than ROTATION_PERIOD_DAYS + ROTATION_GRACE_SECONDS "
            f"({(policy.period + policy.grace).total_seconds() / 86400:g} days), or the "
            "current credential lapses before the next rotation"
        )
    check_rotation_grace({"ROTATION_GRACE_SECONDS": str(policy.grace.total_seconds()), **env})
    return policy


def connection_from_env(env: Mapping[str, str], store: SecretStore) -> str:
    """DATABASE_URL with DBACCESS_LOGIN's login: the current version, or the pending one
    if a run died while changing the rotator's own password."""
    conninfo = Settings.from_env(env).database_url
    login_secret = env.get("DBACCESS_LOGIN")
    if login_secret:
        login = with_stage(store, login_secret, CURRENT)
        if login is None:
            raise SettingsError(f"DBACCESS_LOGIN={login_secret!r}: no current version")
        pending = with_stage(store, login_secret, PENDING)
        if pending is not None and not logs_in(make_conninfo(conninfo, **login.login())):
            login = pending
        conninfo = make_conninfo(conninfo, **login.login())
    return conninfo


def _store(env: Mapping[str, str]) -> SecretStore:
    spec = env.get("DB_SECRET_STORE")
    if not spec:
        raise SettingsError("DB_SECRET_STORE is not set: expected file:PATH or keyvault:https://")
    try:
        return open_store(spec)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def write_metrics(path: Path, status: Status, outcome: str | None) -> None:
    """Prometheus textfile-collector output: credential age, due time, last outcome."""
    registry = CollectorRegistry()
    now = datetime.now(UTC)
    age = Gauge(
        "dbaccess_credential_age_seconds", "Age of the current credential.", registry=registry
    )
    age.set((now - status.current_since).total_seconds() if status.current_since else -1)
    due = Gauge(
        "dbaccess_credential_next_due_timestamp_seconds",
        "When the next rotation is due.",
        registry=registry,
    )
    due.set(status.next_due.timestamp() if status.next_due else 0)
    stuck = Gauge(
        "dbaccess_rotation_stuck",
        "1 if a rotation stopped half-way and stays so.",
        registry=registry,
    )
    stuck.set(int(status.stuck))
    failed = Gauge(
        "dbaccess_rotation_failed",
        "1 if the last rotation failed and none has succeeded since.",
        registry=registry,
    )
    failed.set(int(status.failed))
    if outcome is not None:
        result = Gauge(
            "dbaccess_rotation_last_run_timestamp_seconds",
            "Last rotation run, by outcome.",
            ["outcome"],
            registry=registry,
        )
        result.labels(outcome).set(now.timestamp())
    write_to_textfile(str(path), registry)


def _rotate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    store = _store(env)
    rotator = Rotator(
        store,
        connection_from_env(env, store),
        policy_from_env(env),
        own_login=env.get("DBACCESS_LOGIN"),
        max_wait=args.max_wait,
    )
    outcome, code = "success", 0
    try:
        print(f"dbaccess: {rotator.run(force=args.now)}")
    except (RotationBusy, RotationDeferred) as exc:
        print(f"dbaccess: {exc}", file=sys.stderr)
        outcome, code = "busy", EXIT_BUSY
    except RotationFailed as exc:
        print(f"dbaccess: {exc}; the next run starts from a new password", file=sys.stderr)
        outcome, code = "failure", EXIT_FAILED
    if args.metrics_file:
        write_metrics(args.metrics_file, rotator.status(), outcome)
    return code


def _status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    store = _store(env)
    status = Rotator(store, "", policy_from_env(env)).status()
    if args.json:
        print(json.dumps(asdict(status), default=str))
    else:
        for key, value in asdict(status).items():
            print(f"{key:<22} {value if value is not None else '-'}")
        if status.stuck:
            print("a rotation stopped half-way: run `dbaccess rotate --now` to resume it")
        if status.failed:
            print("the last rotation failed: see `dbaccess audit tail` (rotation.fail)")
    return EXIT_FAILED if status.stuck or status.failed else 0


def _bootstrap(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """First run on a database DATABASE_URL administers: rotator login, first credential."""
    admin = Settings.from_env(env).database_url
    server = {k: v for k, v in conninfo_to_dict(admin).items() if k not in ("user", "password")}
    rotator = bootstrap(admin, _store(env), make_conninfo("", **server), policy_from_env(env))
    print(f"dbaccess: bootstrapped; the API logs in as {rotator.status().active_slot}")
    return 0


def _anchor_sink(spec: str | None) -> AnchorSink:
    if not spec:
        raise SettingsError("no anchor sink: give --sink/--anchors or set AUDIT_ANCHORS")
    try:
        return open_sink(spec)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _audit_verify(conn: psycopg.Connection[Any], spec: str | None) -> int:
    try:
        anchors = _anchor_sink(spec).read() if spec else []
    except AnchorError as exc:
        print(f"audit anchors broken: {exc}")
        return EXIT_BROKEN_CHAIN
    result = audit.verify(conn, anchors)
    if result.intact:
        checked = f"{result.anchors} anchors hold" if spec else "no anchors checked"
        print(f"audit chain intact: {result.rows} events, {checked}")
        return 0
    print(f"audit chain broken at event {result.first_broken_id}: {result.reason}")
    return EXIT_BROKEN_CHAIN


def _audit_anchor(conn: psycopg.Connection[Any], spec: str | None) -> int:
    """Append the chain head to the sink, only if the chain holds against every earlier
    anchor: a rewritten history is never anchored as if it were the real one."""
    sink = _anchor_sink(spec)
    try:
        earlier = sink.read(missing_ok=True)
        head = audit.head(conn)
        result = audit.verify(conn, earlier)
        if not result.intact:
            print(
                f"audit chain broken at event {result.first_broken_id}: {result.reason}; "
                "nothing anchored"
            )
            return EXIT_BROKEN_CHAIN
        sink.append(head)
    except AnchorError as exc:
        print(f"dbaccess: cannot anchor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"anchored event {head.id} ({head.rows} events, hash {head.hash[:16]}...)")
    return 0


# The audit subcommands that give a login a read-only group: what each grants.
_GRANTS = {
    "grant-auditor": (audit.grant_auditor, "anchor and verify the audit trail"),
    "grant-drill": (audit.grant_drill, "read the rates and the audit trail (drill)"),
}


def _audit(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    conninfo = Settings.from_env(env).database_url
    spec = getattr(args, "sink", None) or env.get("AUDIT_ANCHORS")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if args.audit_command == "verify":
            return _audit_verify(conn, spec)
        if args.audit_command == "anchor":
            return _audit_anchor(conn, spec)
        if args.audit_command in _GRANTS:
            grant, may = _GRANTS[args.audit_command]
            try:
                grant(conn, args.principal)
            except ValueError as exc:
                raise SettingsError(str(exc)) from None
            print(f"dbaccess: {args.principal} may {may}")
            return 0
        for line in audit.tail(conn, args.after):
            print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dbaccess", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    rotate = commands.add_parser("rotate", help="rotate the API's database login")
    when = rotate.add_mutually_exclusive_group(required=True)
    when.add_argument("--if-due", action="store_true", help="only if the period has passed")
    when.add_argument("--now", action="store_true", help="rotate now")
    rotate.add_argument("--metrics-file", type=Path, help="write Prometheus metrics here")
    rotate.add_argument(
        "--max-wait",
        type=float,
        default=900,
        metavar="SECONDS",
        help="inside the previous credential's grace, wait at most this long for it to end"
        " (default 900); longer: exit 3, nothing changed",
    )
    commands.add_parser(
        "bootstrap",
        help="give the rotator a login and the API its first "
        "credential (DATABASE_URL: an administrator)",
    )
    status = commands.add_parser("status", help="active slot, age, next due, stuck steps")
    status.add_argument("--json", action="store_true")
    audit_parser = commands.add_parser("audit", help="the tamper-evident audit trail")
    audit_commands = audit_parser.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify", help="check the hash chain (and the anchors); name the first broken row"
    )
    verify.add_argument(
        "--anchors",
        dest="sink",
        metavar="SPEC",
        help="file:PATH or blob:https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB "
        "(default: AUDIT_ANCHORS)",
    )
    anchor = audit_commands.add_parser(
        "anchor", help="append the chain head to an append-only sink outside the database"
    )
    anchor.add_argument(
        "--sink", metavar="SPEC", help="as for verify --anchors (default: AUDIT_ANCHORS)"
    )
    grant = audit_commands.add_parser(
        "grant-auditor",
        help="make a login (in Azure: an Entra ID principal, created) a member of "
        "rates_auditor (DATABASE_URL: an administrator)",
    )
    grant.add_argument("principal", help="the login's role name")
    drill = audit_commands.add_parser(
        "grant-drill",
        help="make a login (in Azure: an Entra ID principal, created) a member of "
        "rates_dr_drill, the restore drill's read-only role (DATABASE_URL: an administrator)",
    )
    drill.add_argument("principal", help="the login's role name")
    tail = audit_commands.add_parser("tail", help="events as JSON lines")
    tail.add_argument("--after", type=int, default=0, help="only events after this id")
    access_handlers = access_cli.register(commands)  # users, policy, access
    args = parser.parse_args(argv)
    handlers = {"rotate": _rotate, "status": _status, "audit": _audit, "bootstrap": _bootstrap}
    handlers.update(access_handlers)
    try:
        return handlers[args.command](args, os.environ)
    except (SettingsError, SecretStoreError) as exc:
        print(f"dbaccess: configuration error: {exc}", file=sys.stderr)
        return 2
    except psycopg.errors.LockNotAvailable as exc:  # the audit chain's head, held too long
        print(f"dbaccess: {exc.diag.message_primary}", file=sys.stderr)
        return EXIT_FAILED
    except psycopg.OperationalError as exc:
        print(f"dbaccess: cannot reach the database: {type(exc).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
