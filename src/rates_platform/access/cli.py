"""``dbaccess users|policy|access``: a thin client of the database's access workflow.

Every command acts as the login of the standard libpq environment (DATABASE_URL or
PG*): the database's session_user is who asks, approves or administers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tomllib
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from rates_platform.access import domain
from rates_platform.access.errors import AccessError
from rates_platform.access.notify import notifier_from_env
from rates_platform.access.service import AccessService, pgpass_path
from rates_platform.logs import JsonFormatter
from rates_platform.settings import Settings, SettingsError

Handler = Callable[[argparse.Namespace, Mapping[str, str]], int]
DEFAULT_POLICY = Path("access-policy.toml")


def _service(env: Mapping[str, str]) -> AccessService:
    try:
        notifier = notifier_from_env(env)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return AccessService(Settings.from_env(env).database_url, notifier, pgpass_path(dict(env)))


def _print_rows(rows: list[dict[str, Any]], as_json: bool, columns: tuple[str, ...]) -> None:
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    for row in rows:
        print("  ".join(f"{key}={_text(row.get(key))}" for key in columns))


def _text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, list):
        return ",".join(map(_printable, value)) or "-"
    return "-" if value is None else _printable(value)


def _printable(value: object) -> str:
    """Others' text (a reason, a statement) escaped: it must not drive the reader's
    terminal (escape sequences) or forge lines of its own (newlines, carriage returns)."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _describe(row: dict[str, Any], pgpass: Path | None = None) -> str:
    state = f"request {row['id']} ({row['role_name']} for {row['minutes']} min): {row['status']}"
    if row["status"] == "granted":
        state += f" until {_text(row['ends_at'])}, log in as {row['login_name']}"
        if pgpass is not None:
            state += f" (its password is in {pgpass})"
    elif row["status"] == "pending" and pgpass is not None:
        login = f"{row['requester']}_r{row['id']}"
        state += f"; once granted, log in as {login} (its password is in {pgpass})"
    return state


def _users(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    access = _service(env)
    if args.users_command == "add":
        password = None
        if args.password_file is not None:
            password = args.password_file.read_text(encoding="utf-8").rstrip("\n")
            if not password:
                raise AccessError(f"{args.password_file} is empty")
        elif not args.entra:
            raise AccessError("give --password-file PATH (a local login) or --entra (Azure)")
        access.add_person(
            args.name,
            approver=args.approver,
            groups=args.group or [],
            password=password,
            entra=args.entra,
        )
        print(f"dbaccess: {args.name} added" + (" as an approver" if args.approver else ""))
    elif args.users_command == "remove":
        ended = access.remove_person(args.name)
        print(f"dbaccess: {args.name} removed; grants revoked, {ended} session(s) ended")
    else:
        columns = ("name", "approver", "groups", "entra", "added_at", "removed_at")
        _print_rows(access.people(), args.json, columns)
    return 0


def _policy(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        document = tomllib.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AccessError(f"cannot read {args.file}: {exc}") from None
    policy = domain.parse_policy(document)
    access = _service(env)
    changes = access.policy_changes(policy) if args.dry_run else access.apply_policy(policy)
    for line in changes or ["no change"]:
        print(line)
    if args.dry_run and changes:
        print("dbaccess: dry run, nothing applied")
    return 0


def _access(args: argparse.Namespace, env: Mapping[str, str]) -> int:  # noqa: PLR0912
    access = _service(env)
    command = args.access_command
    if command == "request":
        row = access.request(args.role, args.minutes, args.reason, args.emergency)
        print(_describe(row, pgpass_path(dict(env))))
    elif command in ("approve", "deny", "revoke", "review"):
        if command == "approve":
            row = access.approve(args.id)
        elif command == "deny":
            row = access.deny(args.id, args.reason)
        elif command == "revoke":
            row = access.revoke(args.id, args.reason)
        else:
            row = access.review(args.id, args.note)
        print(_describe(row))
    elif command == "list":
        status = "pending" if args.pending else None
        rows = (
            access.alert_unreviewed()
            if args.alert
            else access.requests(status=status, unreviewed=args.unreviewed)
        )
        columns = ("id", "status", "requester", "role_name", "minutes", "approvers", "ends_at")
        _print_rows(rows, args.json, (*columns, "reason"))
    elif command == "show":
        _print_rows([access.show(args.id)], True, ())
    elif command == "expire":
        events = access.expire()
        for event in events:
            print(f"{event['kind']}: request {event['request_id']} {event['login_name'] or ''}")
        print(f"dbaccess: expiry run done ({len(events)} event(s))")
    elif command == "activity":
        server_log = args.log_file or env.get("ACCESS_SERVER_LOG")
        if not server_log:
            raise SettingsError("give --log-file or ACCESS_SERVER_LOG: PostgreSQL's log file")
        for statement in access.activity(args.id, Path(server_log)):
            print(f"{statement.at} [{statement.pid}] {_printable(statement.text)}")
    else:
        print(domain.render_report(access.requests(since=args.since), args.format), end="")
    failures = access.notification_failures
    if failures:
        print(f"dbaccess: notifications failed (decision stands): {failures}", file=sys.stderr)
    return 0


def _guarded(handler: Handler) -> Handler:
    def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
        log = logging.getLogger("rates_platform.access")
        if not log.handlers:
            stderr = logging.StreamHandler(sys.stderr)
            stderr.setFormatter(JsonFormatter())
            log.addHandler(stderr)
        try:
            return handler(args, env)
        except AccessError as exc:
            print(f"dbaccess: refused: {exc}", file=sys.stderr)
            return exc.exit_code

    return run


def _request_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=int, help="the request's number")


def register(commands: Any) -> dict[str, Handler]:
    """Adds users, policy and access to ``dbaccess``'s subcommands; their handlers."""
    users = commands.add_parser("users", help="people who may request or approve access")
    users_commands = users.add_subparsers(dest="users_command", required=True)
    add = users_commands.add_parser("add", help="a person's login, with no privileges of its own")
    add.add_argument("name")
    add.add_argument("--approver", action="store_true", help="may approve requests")
    add.add_argument("--group", action="append", help="an approver group (repeatable)")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password-file", type=Path, help="file holding the person's password")
    secret.add_argument("--entra", action="store_true", help="a Microsoft Entra ID principal")
    remove = users_commands.add_parser("remove", help="revoke grants, end sessions, disable")
    remove.add_argument("name")
    listing = users_commands.add_parser("list", help="everyone, removed people included")
    listing.add_argument("--json", action="store_true")

    policy = commands.add_parser("policy", help="the access policy (access-policy.toml)")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    apply = policy_commands.add_parser("apply", help="show the change and apply it (audited)")
    apply.add_argument("--file", type=Path, default=DEFAULT_POLICY)
    apply.add_argument("--dry-run", action="store_true", help="show the change only")

    access = commands.add_parser("access", help="request, approve, use and end access")
    sub = access.add_subparsers(dest="access_command", required=True)
    request = sub.add_parser("request", help="ask for a role for a while")
    request.add_argument("--role", required=True)
    request.add_argument("--minutes", type=float, required=True)
    request.add_argument("--reason", default="")
    request.add_argument(
        "--emergency", action="store_true", help="break glass: at once, reviewed afterwards"
    )
    listing = sub.add_parser("list", help="requests and grants")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--pending", action="store_true")
    which.add_argument("--unreviewed", action="store_true", help="emergencies to review")
    which.add_argument("--alert", action="store_true", help="alert every unreviewed emergency")
    listing.add_argument("--json", action="store_true")
    for name, text in (("show", "one request"), ("approve", "approve a request")):
        _request_id(sub.add_parser(name, help=text))
    deny = sub.add_parser("deny", help="refuse a pending request")
    _request_id(deny)
    deny.add_argument("--reason", required=True)
    revoke = sub.add_parser("revoke", help="end a grant now (or withdraw a request)")
    _request_id(revoke)
    revoke.add_argument("--reason", default="revoked")
    review = sub.add_parser("review", help="review an emergency grant (approvers)")
    _request_id(review)
    review.add_argument("--note", required=True)
    sub.add_parser("expire", help="the job: end due grants and their sessions, alert")
    activity = sub.add_parser("activity", help="statements run under a grant (local log)")
    _request_id(activity)
    activity.add_argument("--log-file", help="PostgreSQL's log file (or ACCESS_SERVER_LOG)")
    report = sub.add_parser("report", help="who had which access when, for auditors")
    report.add_argument("--since", type=datetime.fromisoformat, required=True)
    report.add_argument("--format", choices=("json", "csv"), default="json")
    return {
        "users": _guarded(_users),
        "policy": _guarded(_policy),
        "access": _guarded(_access),
    }
