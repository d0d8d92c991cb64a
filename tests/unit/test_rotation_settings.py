"""Rotation settings are checked against each other at start, with one-line errors."""

from __future__ import annotations

import pytest

from rates_platform.dbaccess.cli import main as dbaccess_main
from rates_platform.dbaccess.cli import policy_from_env
from rates_platform.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"ROTATION_PERIOD_DAYS": "90"}, "CREDENTIAL_LIFETIME_DAYS"),
        ({"ROTATION_PERIOD_DAYS": "60", "CREDENTIAL_LIFETIME_DAYS": "60"}, "ROTATION_PERIOD_DAYS"),
        ({"ROTATION_GRACE_SECONDS": "600"}, "DB_POOL_MAX_LIFETIME"),
        ({"ROTATION_GRACE_SECONDS": "10", "DB_POOL_MAX_LIFETIME": "9"}, "DB_CREDENTIAL_TTL"),
    ],
)
def test_inconsistent_rotation_settings_are_refused(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names) as raised:
        policy_from_env(env)
    assert "\n" not in str(raised.value)


def test_consistent_settings_pass() -> None:
    policy = policy_from_env(
        {"ROTATION_GRACE_SECONDS": "2", "DB_POOL_MAX_LIFETIME": "1", "DB_CREDENTIAL_TTL": "0.5"}
    )
    assert policy.grace.total_seconds() == 2
    assert policy_from_env({}).lifetime.days == 60


def test_the_api_refuses_a_grace_shorter_than_its_pool_lifetime() -> None:
    env = {"DATABASE_URL": "host=x", "ROTATION_GRACE_SECONDS": "60"}
    with pytest.raises(SettingsError, match="ROTATION_GRACE_SECONDS=60 is not valid"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "DB_POOL_MAX_LIFETIME": "30"}).pool_max_lifetime == 30


def test_the_command_says_so_in_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DB_SECRET_STORE", "file:/nonexistent/secrets.enc")
    monkeypatch.setenv("ROTATION_PERIOD_DAYS", "90")
    assert dbaccess_main(["status"]) == 2
    err = capsys.readouterr().err
    assert "CREDENTIAL_LIFETIME_DAYS=60 is not valid" in err and err.count("\n") == 1
