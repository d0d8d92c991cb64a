"""The disaster-recovery drill (`make dr-drill`) on real PostgreSQL servers: a restore to
the target time passes every check, and a restore past it is caught."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from rates_platform.drdrill import (
    DRILL_ROLE,
    FAILED,
    INCONCLUSIVE,
    PASSED,
    QUERIES,
    Report,
    check_restored,
    compare,
    main,
    prepare,
    restore,
    same_answer,
)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Outside pytest's 0700 temp root (which a concurrent pytest run resets), so the
    servers' system user keeps its way in for the whole test."""
    path = Path(tempfile.mkdtemp(prefix="rates-dr-drill-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_point_in_time_restore_is_whole_and_a_later_one_is_caught(workdir: Path) -> None:
    report = Report()
    backup = prepare(workdir, report, Path(__file__).parents[2] / "db" / "rates.sql")
    assert report.failures == 0, report.lines  # both loads changed what the API answers

    with (
        restore(workdir, backup, backup.target) as at_target,
        restore(workdir, backup, None) as latest,
    ):
        check_restored(report, at_target, backup.expected, backup.anchor)
        assert report.failures == 0, "\n".join(report.lines)
        assert sum(line.startswith("ok ") for line in report.lines) == 3 + len(QUERIES) + 2

        # Replaying the whole archive brings back the load made after the target: the
        # changed lane's answers and an audit head past the anchor must fail the checks.
        later = Report()
        check_restored(later, latest, backup.expected, backup.anchor)
        failed = [line for line in later.lines if line.startswith("FAIL")]
        assert any("orig_code=CNGGZ&dest_code=EETLL" in line for line in failed), later.lines
        assert any("no audit event after the target" in line for line in failed), later.lines
        assert not any("NLRTM" in line for line in failed)  # the lane no load touched

        # The Azure drill's comparison, with `latest` as the live server: a load after
        # the target makes the answers no reference (3), and none after it passes (0).
        report_, code = compare(latest, at_target, backup.target)
        assert code == INCONCLUSIVE, report_.lines
        report_, code = compare(latest, latest, datetime.now(UTC))
        assert code == PASSED, report_.lines

        # The checks ran as the drill's own login: rates_dr_drill, not the workflow's
        # rates_reader (which the expiry job would revoke in Azure).
        with psycopg.connect(at_target) as conn:
            roles = conn.execute(
                "SELECT pg_has_role(%s, 'USAGE'), pg_has_role('rates_reader', 'USAGE')",
                (DRILL_ROLE,),
            ).fetchone()
        assert roles == (True, False)

        # A login that cannot read the rates (acting as rates_auditor only, as the
        # drill's login did before 0011) gets the same error from both servers: the
        # answers are equal, yet the comparison must fail, not pass. (A role may set its
        # own defaults; the app's connections then start as rates_auditor.)
        with psycopg.connect(latest, autocommit=True) as conn:
            conn.execute("ALTER ROLE CURRENT_USER SET role = 'rates_auditor'")
        report_, code = compare(latest, latest, datetime.now(UTC))
        assert code == FAILED, report_.lines
        failed = [line for line in report_.lines if line.startswith("FAIL")]
        assert len(failed) == len(QUERIES) and all("(status 5" in line for line in failed)


def test_only_equal_200_answers_match() -> None:
    assert same_answer((200, {"rates": []}), (200, {"rates": []}))
    assert not same_answer((200, {"rates": []}), (200, {"rates": [1]}))
    assert not same_answer((500, {"title": "x"}), (500, {"title": "x"}))
    assert not same_answer((400, None), (400, None))


def test_compare_refuses_a_target_time_without_an_offset() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--source", "", "--restored", "", "--target-time", "2026-01-01T00:00"])
    assert exit_.value.code == 2


# --- scripts/dr_drill_azure.sh against stand-ins for `az` and the drill's Python ------

STANDIN_AZ = """#!/usr/bin/env bash
echo "az $*" >> "$CALLS"
case "$*" in
  "postgres flexible-server restore "*) [ -z "${FAIL_RESTORE:-}" ] ;;
  "postgres flexible-server show "*"--name psql-live "*) echo psql-live.example ;;
  "postgres flexible-server show "*) echo psql-scratch.example ;;
  "account get-access-token "*) echo "$TOKEN" ;;
esac
"""
# Records its arguments and whether the token reached it, then exits as told.
STANDIN_PYTHON = """#!/usr/bin/env bash
echo "python3 $* token=$([ "$PGPASSWORD" = "$TOKEN" ] && echo yes || echo no)" >> "$CALLS"
exit "${DRILL_EXIT:-0}"
"""
TOKEN = "entra-token-not-a-password"  # noqa: S105 - the stand-in's token


def run_azure_drill(directory: Path, **env: str) -> tuple[int, list[str], str]:
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    for name, text in (("az", STANDIN_AZ), ("python3", STANDIN_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    calls = directory / "calls"
    calls.touch()
    base = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "TOKEN": TOKEN,
        "RESOURCE_GROUP": "rg-rates-prod",
        "SOURCE_SERVER": "psql-live",
        "DRILL_LOGIN": "id-rates-prod-drill",
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
    }
    result = subprocess.run(
        [str(Path(__file__).parents[2] / "scripts" / "dr_drill_azure.sh")],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, calls.read_text().splitlines(), result.stdout + result.stderr


def _option(call: str, name: str) -> str:
    words = call.split()
    return words[words.index(name) + 1]


def test_azure_drill_restores_compares_at_the_same_time_and_deletes(tmp_path: Path) -> None:
    code, calls, output = run_azure_drill(tmp_path)
    assert code == 0, output
    restore_call = next(c for c in calls if "flexible-server restore" in c)
    compare_call = next(c for c in calls if c.startswith("python3"))
    scratch = _option(restore_call, "--name")
    assert scratch.startswith("psql-live-drill-") and _option(restore_call, "--source-server")
    target = datetime.fromisoformat(_option(restore_call, "--restore-time"))
    assert timedelta(minutes=14) < datetime.now(UTC) - target < timedelta(minutes=16)
    assert _option(compare_call, "--target-time") == _option(restore_call, "--restore-time")
    assert "host=psql-live.example" in compare_call and "host=psql-scratch.example" in compare_call
    assert compare_call.count("sslmode=verify-full sslrootcert=system") == 2
    assert compare_call.endswith("token=yes")  # the Entra token is the password...
    assert TOKEN not in output  # ...and never printed
    assert calls[-1].startswith("az postgres flexible-server delete") and scratch in calls[-1]


def test_azure_drill_deletes_the_scratch_server_when_a_check_fails(tmp_path: Path) -> None:
    code, calls, _ = run_azure_drill(tmp_path, DRILL_EXIT="1")
    assert code == 1
    assert calls[-1].startswith("az postgres flexible-server delete")


def test_azure_drill_reports_a_failed_restore_apart(tmp_path: Path) -> None:
    code, calls, output = run_azure_drill(tmp_path, FAIL_RESTORE="1")
    assert code == 2, output
    assert not any(c.startswith("python3") for c in calls)
    assert calls[-1].startswith("az postgres flexible-server delete")
