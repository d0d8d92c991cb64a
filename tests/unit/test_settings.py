from pathlib import Path

import pytest

from rates_platform.settings import Settings, SettingsError

DB = {"DATABASE_URL": "postgresql://example/rates"}


def test_defaults_need_only_a_database() -> None:
    settings = Settings.from_env(DB)
    assert (settings.host, settings.port, settings.max_range_days) == ("127.0.0.1", 3000, 366)


def test_libpq_variables_are_enough() -> None:
    assert Settings.from_env({"PGHOST": "db"}).database_url == ""


def test_no_database_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        Settings.from_env({})


def test_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql://u:pw@h/db\n")
    assert Settings.from_env({"DATABASE_URL_FILE": str(secret)}).database_url == (
        "postgresql://u:pw@h/db"
    )


def test_unreadable_secret_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL_FILE: cannot read"):
        Settings.from_env({"DATABASE_URL_FILE": str(tmp_path / "missing")})


def test_value_and_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="both set"):
        Settings.from_env({**DB, "DATABASE_URL_FILE": str(tmp_path)})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("WEB_WORKERS", "0"),
        ("RATES_MAX_RANGE_DAYS", "-1"),
        ("DB_STATEMENT_TIMEOUT", "0"),
        ("DB_POOL_TIMEOUT", "soon"),
        ("LOG_LEVEL", "chatty"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}={value!r} is not valid"):
        Settings.from_env({**DB, name: value})


def test_pool_bounds_must_be_ordered() -> None:
    with pytest.raises(SettingsError, match="DB_POOL_MAX_SIZE=2 is smaller"):
        Settings.from_env({**DB, "DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "2"})


def test_secret_not_in_repr() -> None:
    assert "pw" not in repr(Settings.from_env({"DATABASE_URL": "postgresql://u:pw@h/db"}))


def test_password_file_for_libpq_variables(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    settings = Settings.from_env({"PGHOST": "db", "PGPASSWORD_FILE": str(secret)})
    assert settings.database_url == "password=s3cret"
