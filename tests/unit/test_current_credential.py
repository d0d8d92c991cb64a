"""The API's credential cache: a secret store outage does not stop new connections."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from prometheus_client import REGISTRY

from rates_platform.dbaccess.credentials import CurrentCredential
from rates_platform.dbaccess.secrets import CURRENT, LocalFileStore, SecretStoreError


def errors_counted() -> float:
    return REGISTRY.get_sample_value("db_credential_store_errors_total") or 0.0


def test_a_store_outage_serves_the_cached_credential_then_the_new_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalFileStore(tmp_path / "secrets.enc")
    first = store.add_version(
        "app", {"username": "rates_app_a", "password": "pw-one"}, {CURRENT}, {}
    )
    now = [0.0]
    credential = CurrentCredential(store, "app", ttl=1.0, clock=lambda: now[0])
    assert credential.login() == {"user": "rates_app_a", "password": "pw-one"}

    key = store.key_path.read_bytes()
    store.key_path.write_bytes(Fernet.generate_key())  # the store is unreadable from now on
    with pytest.raises(SecretStoreError):
        store.versions("app")
    before = errors_counted()
    now[0] = 5.0
    with caplog.at_level(logging.WARNING):
        assert credential.login() == {"user": "rates_app_a", "password": "pw-one"}  # stale
        credential.invalidate()  # a failed connect drops the cache: still served
        assert credential.login() == {"user": "rates_app_a", "password": "pw-one"}
    assert errors_counted() == before + 2
    assert "cached credential" in caplog.text and "pw-one" not in caplog.text

    store.key_path.write_bytes(key)  # the store is back, with a rotated credential
    store.add_version("app", {"username": "rates_app_b", "password": "pw-two"}, {CURRENT}, {})
    store.update("app", first.version_id, set(), {})
    now[0] = 10.0
    assert credential.login() == {"user": "rates_app_b", "password": "pw-two"}


def test_with_nothing_cached_a_store_error_is_raised(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "secrets.enc")
    store.add_version("app", {"username": "rates_app_a", "password": "pw"}, {CURRENT}, {})
    store.key_path.write_bytes(Fernet.generate_key())
    with pytest.raises(SecretStoreError):
        CurrentCredential(store, "app").login()
