"""Pure rules of access requests: the policy file, names, the server log, reports."""

from __future__ import annotations

import csv
import io
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rates_platform.access.domain import (
    parse_policy,
    person_name,
    policy_diff,
    policy_document,
    render_report,
    statements_of,
)
from rates_platform.access.errors import AccessError
from rates_platform.access.notify import JsonLinesSink, Notifier

ROOT = Path(__file__).resolve().parents[2]


def repository_policy() -> dict[str, Any]:
    return tomllib.loads((ROOT / "access-policy.toml").read_text())


def test_the_repository_policy_parses_with_defaults_applied() -> None:
    policy = parse_policy(repository_policy())
    assert sorted(policy) == ["rates_operator", "rates_reader"]
    assert (policy["rates_reader"].approvals, policy["rates_operator"].approvals) == (1, 2)
    assert policy["rates_operator"].approver_groups == ("approvers",)
    assert policy["rates_reader"].emergency_max_minutes == 30
    assert policy_document(policy)["rates_reader"]["approver_groups"] == ["approvers"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version = 1"),
        ({"roles": {}}, "at least one"),
        ({"roles": {"rates_reader": {"approvals": 0, "max_minutes": 5}}}, "approvals = 0"),
        ({"roles": {"rates_reader": {"approvals": 1, "max_minutes": 9999}}}, "max_minutes"),
        ({"roles": {"rates_reader": {"approvals": True, "max_minutes": 5}}}, "approvals"),
        ({"roles": {"rates_reader": {"approvals": 1}}}, "missing max_minutes"),
        ({"roles": {"rates_reader": {"approvals": 1, "max_minutes": 5, "ttl": 1}}}, "unknown"),
        ({"defaults": {"approvers": []}}, "non-empty list"),
        ({"defaults": {"approvers": ["Not A Group"]}}, "not a valid group"),
        ({"defaults": {"reason_required": "yes"}}, "true or false"),
        ({"owner": "me"}, "unknown setting owner"),
    ],
)
def test_a_bad_policy_is_one_clear_error(change: dict[str, Any], message: str) -> None:
    document = repository_policy()
    for key, value in change.items():
        if isinstance(value, dict) and key == "defaults":
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    with pytest.raises(AccessError, match=message):
        parse_policy(document)


def test_the_policy_diff_names_added_removed_and_changed_settings() -> None:
    before = policy_document(parse_policy(repository_policy()))
    document = repository_policy()
    document["roles"]["rates_reader"]["approvals"] = 2
    del document["roles"]["rates_operator"]
    after = policy_document(parse_policy(document))
    assert policy_diff(before, after) == ["- rates_operator", "~ rates_reader.approvals: 1 -> 2"]
    assert policy_diff({}, after)[0].startswith("+ rates_reader: approvals=2")
    assert policy_diff(after, after) == []


@pytest.mark.parametrize(
    "name", ["Alice", "pg_monitor", "rates_app", "alice_r12", "a" * 41, "1abc", "al-ice", ""]
)
def test_person_names_that_could_clash_or_confuse_are_refused(name: str) -> None:
    with pytest.raises(AccessError):
        person_name(name)


def test_person_names_that_are_plain_are_accepted() -> None:
    assert person_name("alice_r") == "alice_r"
    assert person_name("bo_2") == "bo_2"


LOG = """\
2026-11-28 01:00:00.100 UTC [101] LOG:  connection authorized: user=alice_r7 database=rates
2026-11-28 01:00:00.200 UTC [102] LOG:  connection authorized: user=bob database=rates
2026-11-28 01:00:01.000 UTC [101] LOG:  statement: SELECT count(*)
\tFROM ports
2026-11-28 01:00:01.100 UTC [102] LOG:  statement: SELECT 'not alice'
2026-11-28 01:00:01.200 UTC [101] LOG:  execute <unnamed>: UPDATE prices SET price = 1
2026-11-28 01:00:01.300 UTC [101] ERROR:  statement: not a statement line
2026-11-28 01:00:02.000 UTC [101] LOG:  disconnection: session time: 0:00:01.900 user=alice_r7
2026-11-28 01:00:03.000 UTC [101] LOG:  connection authorized: user=carol database=rates
2026-11-28 01:00:03.100 UTC [101] LOG:  statement: SELECT 'pid reused by carol'
"""


def test_statements_are_attributed_to_the_login_of_their_process() -> None:
    found = statements_of(LOG.splitlines(keepends=True), "alice_r7")
    assert [(s.pid, s.text) for s in found] == [
        (101, "SELECT count(*)\nFROM ports"),
        (101, "UPDATE prices SET price = 1"),
    ]
    assert found[0].at == "2026-11-28 01:00:01.000 UTC"
    assert statements_of(LOG.splitlines(), "nobody") == []


def test_reports_render_as_json_and_csv_for_auditors() -> None:
    row = {
        "id": 3,
        "requester": "alice",
        "role_name": "rates_reader",
        "status": "expired",
        "approvers": ["bea", "cid"],
        "starts_at": datetime(2026, 11, 28, 1, 0, tzinfo=UTC),
        "reason": 'a "quoted", reason',
    }
    as_json = json.loads(render_report([row], "json"))
    assert as_json[0]["approvers"] == ["bea", "cid"]
    assert as_json[0]["starts_at"] == "2026-11-28T01:00:00+00:00"
    assert as_json[0]["ended_at"] is None
    parsed = list(csv.DictReader(io.StringIO(render_report([row], "csv"))))
    assert parsed[0]["approvers"] == "bea;cid"
    assert parsed[0]["reason"] == 'a "quoted", reason'


class Flaky:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures, self.delivered = failures, 0

    def send(self, message: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("down")
        self.delivered += 1


def test_a_notification_is_retried_then_counted_and_never_raised(tmp_path: Path) -> None:
    recovering, dead = Flaky(failures=2), Flaky(failures=99)
    file_sink = JsonLinesSink(tmp_path / "n.jsonl")
    notifier = Notifier([recovering, dead, file_sink], attempts=3, backoff=0)
    notifier.notify("access.grant", id=1)
    assert recovering.delivered == 1 and dead.delivered == 0
    assert notifier.failures == {"flaky": 1}
    assert json.loads((tmp_path / "n.jsonl").read_text())["event"] == "access.grant"
    assert (tmp_path / "n.jsonl").stat().st_mode & 0o777 == 0o600
