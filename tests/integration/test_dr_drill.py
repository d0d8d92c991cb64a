"""The disaster-recovery drill (`make dr-drill`) on real PostgreSQL servers: a restore to
the target time passes every check, and a restore past it is caught."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rates_platform.drdrill import (
    INCONCLUSIVE,
    PASSED,
    QUERIES,
    Report,
    check_restored,
    compare,
    main,
    prepare,
    restore,
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


def test_compare_refuses_a_target_time_without_an_offset() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--source", "", "--restored", "", "--target-time", "2026-01-01T00:00"])
    assert exit_.value.code == 2
