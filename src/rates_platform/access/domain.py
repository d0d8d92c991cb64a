"""Pure rules of access requests: the policy file, names, the server log, reports.

The workflow's decisions are enforced by PostgreSQL (migration 0009); what is here
is what the client must get right before it asks, and what it reads back.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from rates_platform.access.errors import AccessError

# A person's login name: short, plain, never a grant login (NAME_r<id>) or a service role.
_PERSON = re.compile(r"[a-z][a-z0-9_]{0,39}")
_RESERVED = re.compile(r"(pg_|rates_).*|.*_r[0-9]+")
_GROUP = re.compile(r"[a-z][a-z0-9_]{0,62}")
APPROVER_FLAG_GROUP = "approvers"  # the group of people added with --approver


def person_name(name: str) -> str:
    if not _PERSON.fullmatch(name) or _RESERVED.fullmatch(name):
        raise AccessError(
            f"{name!r} is not a valid person name: lower-case letters, digits and _, "
            "at most 40, not starting with pg_ or rates_, not ending in _r<digits>"
        )
    return name


def group_names(groups: Sequence[str]) -> list[str]:
    for group in groups:
        if not _GROUP.fullmatch(group):
            raise AccessError(f"{group!r} is not a valid group name")
    return sorted(set(groups))


@dataclass(frozen=True)
class RolePolicy:
    """One grantable role's rules, as the database stores them (access.policy)."""

    description: str
    approvals: int
    approver_groups: tuple[str, ...]
    max_minutes: int
    reason_required: bool
    request_expiry_minutes: int
    emergency_max_minutes: int


# name: (type, lowest, highest): the same bounds as the CHECK constraints of access.policy.
_NUMBERS = {
    "approvals": (1, 5),
    "max_minutes": (1, 1440),
    "request_expiry_minutes": (1, 10080),
    "emergency_max_minutes": (0, 240),
}
_ROLE_KEYS = {"description", "approvals", "approvers", "max_minutes", "reason_required"} | {
    "request_expiry_minutes",
    "emergency_max_minutes",
}
_DEFAULT_KEYS = _ROLE_KEYS - {"description", "approvals", "max_minutes"}


def _number(where: str, key: str, value: object) -> int:
    low, high = _NUMBERS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AccessError(f"{where}.{key} = {value!r}: expected a whole number {low}..{high}")
    return value


def _unknown(where: str, keys: Iterable[str], allowed: set[str]) -> None:
    extra = sorted(set(keys) - allowed)
    if extra:
        raise AccessError(f"{where}: unknown setting {', '.join(extra)}")


def parse_policy(document: Mapping[str, Any]) -> dict[str, RolePolicy]:
    """The roles of an access-policy.toml document; every mistake is one clear error."""
    _unknown("policy", document, {"version", "defaults", "roles"})
    if document.get("version") != 1:
        raise AccessError("policy: version = 1 is required")
    defaults = document.get("defaults", {})
    roles = document.get("roles")
    if not isinstance(defaults, dict) or not isinstance(roles, dict) or not roles:
        raise AccessError("policy: [defaults] and at least one [roles.NAME] are required")
    _unknown("defaults", defaults, _DEFAULT_KEYS)
    policy: dict[str, RolePolicy] = {}
    for name, raw in sorted(roles.items()):
        where = f"roles.{name}"
        if not isinstance(raw, dict):
            raise AccessError(f"{where}: expected a table")
        _unknown(where, raw, _ROLE_KEYS)
        merged = {**defaults, **raw}
        missing = sorted({"approvals", "max_minutes", *_DEFAULT_KEYS} - merged.keys())
        if missing:
            raise AccessError(f"{where}: missing {', '.join(missing)}")
        approvers = merged["approvers"]
        if not isinstance(approvers, list) or not approvers:
            raise AccessError(f"{where}.approvers: expected a non-empty list of group names")
        if not isinstance(merged["reason_required"], bool):
            raise AccessError(f"{where}.reason_required: expected true or false")
        description = merged.get("description", "")
        if not isinstance(description, str):
            raise AccessError(f"{where}.description: expected text")
        policy[name] = RolePolicy(
            description=description,
            approvals=_number(where, "approvals", merged["approvals"]),
            approver_groups=tuple(group_names([str(g) for g in approvers])),
            max_minutes=_number(where, "max_minutes", merged["max_minutes"]),
            reason_required=merged["reason_required"],
            request_expiry_minutes=_number(
                where, "request_expiry_minutes", merged["request_expiry_minutes"]
            ),
            emergency_max_minutes=_number(
                where, "emergency_max_minutes", merged["emergency_max_minutes"]
            ),
        )
    return policy


def policy_document(policy: Mapping[str, RolePolicy]) -> dict[str, dict[str, Any]]:
    """The JSON the database's access.apply_policy() takes and current_policy() returns."""
    return {
        name: {**asdict(rule), "approver_groups": list(rule.approver_groups)}
        for name, rule in policy.items()
    }


def policy_diff(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Human-readable changes from ``before`` to ``after`` (both policy documents)."""
    lines: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old is None and new is not None:
            lines.append(f"+ {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(new.items())))
        elif new is None and old is not None:
            lines.append(f"- {name}")
        elif old is not None and new is not None:
            lines.extend(
                f"~ {name}.{key}: {old.get(key)!r} -> {new.get(key)!r}"
                for key in sorted(old.keys() | new.keys())
                if old.get(key) != new.get(key)
            )
    return lines


@dataclass(frozen=True)
class Statement:
    """One statement the server logged for a login's session."""

    at: str
    pid: int
    text: str


_LOG_LINE = re.compile(
    r"(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+) \[(?P<pid>\d+)\] "
    r"(?P<level>[A-Z]+):\s+(?P<message>.*)"
)
_AUTHORIZED = re.compile(r"connection authorized: user=(?P<user>\S+)")
_STATEMENT = re.compile(r"(?:statement|execute [^:]*): (?P<text>.*)", re.DOTALL)


def statements_of(log_lines: Iterable[str], login: str) -> list[Statement]:
    """Statements run in sessions that logged in as ``login``.

    Reads PostgreSQL's stderr log with the default ``log_line_prefix`` ('%m [%p] '):
    ``log_connections`` names each process's user, ``log_statement`` its statements;
    a statement's continuation lines start with a tab.
    """
    users: dict[int, str] = {}
    found: list[Statement] = []
    last: Statement | None = None
    for raw in log_lines:
        line = raw.rstrip("\n")
        if line.startswith("\t") and last is not None:
            last = Statement(last.at, last.pid, f"{last.text}\n{line[1:]}")
            found[-1] = last
            continue
        last = None
        match = _LOG_LINE.fullmatch(line)
        if match is None:
            continue
        pid, message = int(match["pid"]), match["message"]
        authorized = _AUTHORIZED.match(message)
        if authorized is not None:
            users[pid] = authorized["user"]
            continue
        statement = _STATEMENT.match(message)
        if statement is not None and users.get(pid) == login and match["level"] == "LOG":
            last = Statement(match["at"], pid, statement["text"])
            found.append(last)
    return found


REPORT_COLUMNS = (
    "id",
    "requester",
    "role_name",
    "status",
    "emergency",
    "reason",
    "requested_at",
    "approvers",
    "starts_at",
    "ends_at",
    "ended_at",
    "ended_by",
    "end_reason",
    "reviewed_by",
    "reviewed_at",
    "login_name",
)


def render_report(rows: Sequence[Mapping[str, Any]], output: str) -> str:
    """Who had which access when, approved by whom: JSON or CSV for auditors."""
    records = [
        {
            key: (
                ";".join(value)
                if output == "csv" and isinstance(value, list)
                else value.isoformat()
                if isinstance(value, datetime)
                else value
            )
            for key, value in ((k, row.get(k)) for k in REPORT_COLUMNS)
        }
        for row in rows
    ]
    if output == "json":
        return json.dumps(records, indent=2)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()
