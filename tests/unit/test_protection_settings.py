"""Settings of the public API's protection: strict, one-line errors naming the variable."""

from __future__ import annotations

import ipaddress

import pytest

from rates_platform.settings import Settings, SettingsError

DB = {"DATABASE_URL": "postgresql://example/rates"}


def test_defaults_are_public_unlimited_and_metrics_on_loopback() -> None:
    settings = Settings.from_env(DB)
    assert (settings.auth_mode, settings.rate_limit, settings.trusted_proxies) == ("public", "", ())
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9464)
    assert settings.front_door_id == ""


def test_limits_proxies_and_metrics_port() -> None:
    settings = Settings.from_env(
        {
            **DB,
            "RATE_LIMIT": "100/second;3000/minute",
            "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7",
            "METRICS_PORT": "9100",
        }
    )
    assert settings.rate_limit == "100/second;3000/minute"
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
    )
    assert settings.metrics_port == 9100


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"RATE_LIMIT": "lots"}, "RATE_LIMIT="),
        # parsed by limits, but SQLite cannot count past 2**63: every request was a 500
        ({"RATE_LIMIT": "99999999999999999999/second"}, "RATE_LIMIT="),
        ({"RATE_LIMIT": "100/second;0/minute"}, "RATE_LIMIT="),
        ({"RATE_LIMIT": "1/99999999999999999999 second"}, "RATE_LIMIT="),
        ({"TRUSTED_PROXIES": "10.0.0.0/33"}, "TRUSTED_PROXIES="),
        ({"AUTH_MODE": "magic"}, "AUTH_MODE="),
        ({"AUTH_MODE": "entra", "ENTRA_AUDIENCE": "api://x"}, "ENTRA_ISSUER"),
        (
            {
                "AUTH_MODE": "entra",
                "ENTRA_TENANT_ID": "t",
                "ENTRA_AUDIENCE": "a",
                "ENTRA_JWKS_URL": "http://keys.example/",
            },
            "ENTRA_JWKS_URL=",
        ),
        ({"METRICS_PORT": "0"}, "METRICS_PORT="),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({**DB, **env})


def test_entra_from_the_tenant_id() -> None:
    settings = Settings.from_env(
        {**DB, "AUTH_MODE": "entra", "ENTRA_TENANT_ID": "t-1", "ENTRA_AUDIENCE": "api://rates"}
    )
    assert settings.entra_issuer == "https://login.microsoftonline.com/t-1/v2.0"
    assert settings.entra_jwks_url == "https://login.microsoftonline.com/t-1/discovery/v2.0/keys"
