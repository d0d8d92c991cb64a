"""One contract for every SecretStore: the encrypted local file and Azure Key Vault.

Key Vault runs as the official SDK against a local stand-in of its REST API.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.identity import CredentialUnavailableError
from azure.keyvault.secrets import SecretClient

from rates_platform.dbaccess.keyvault import KeyVaultStore
from rates_platform.dbaccess.secrets import (
    CURRENT,
    PENDING,
    PREVIOUS,
    LocalFileStore,
    SecretStore,
    SecretStoreError,
    with_stage,
)
from tests.keyvault_standin import KeyVaultStandIn, StandInCredential, running_standin
from tests.support import free_port

NAME = "rates-db-app"
VALUE = {"username": "rates_app_a", "password": "correct horse battery staple"}


@pytest.fixture(params=["local-file", "key-vault"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecretStore]:
    if request.param == "local-file":
        yield LocalFileStore(tmp_path / "secrets.enc")
        return
    with running_standin(tmp_path) as (standin, url, ca):
        client = SecretClient(
            url, StandInCredential(), verify_challenge_resource=False, connection_verify=str(ca)
        )
        yield KeyVaultStore(client)
        # Every call went through the bearer challenge, as against the real service.
        assert standin.requests


def test_an_unknown_secret_has_no_versions(store: SecretStore) -> None:
    assert store.versions("never-written") == []
    assert with_stage(store, "never-written", CURRENT) is None


def test_versions_keep_value_stages_and_tags_newest_first(store: SecretStore) -> None:
    first = store.add_version(NAME, VALUE, {CURRENT}, {"step": "finish"})
    second = store.add_version(
        NAME, {**VALUE, "password": "another"}, {PENDING}, {"step": "create"}
    )
    listed = store.versions(NAME)
    assert [v.version_id for v in listed] == [second.version_id, first.version_id]
    assert listed[1].value == VALUE
    assert (listed[1].stages, dict(listed[1].tags)) == (frozenset({CURRENT}), {"step": "finish"})
    assert listed[0].created_at >= listed[1].created_at


def test_update_moves_labels_but_never_the_value(store: SecretStore) -> None:
    version = store.add_version(NAME, VALUE, {PENDING}, {"step": "set"})
    store.update(NAME, version.version_id, {CURRENT}, {"step": "finish"})
    (updated,) = store.versions(NAME)
    assert (updated.stages, dict(updated.tags), updated.value) == (
        frozenset({CURRENT}),
        {"step": "finish"},
        VALUE,
    )


def test_a_version_without_stages_is_no_longer_listed(store: SecretStore) -> None:
    keep = store.add_version(NAME, VALUE, {PREVIOUS}, {})
    drop = store.add_version(NAME, VALUE, {PENDING}, {})
    store.update(NAME, drop.version_id, set(), {"step": "failed"})
    assert [v.version_id for v in store.versions(NAME)] == [keep.version_id]


def test_newest_holder_of_a_stage_wins(store: SecretStore) -> None:
    store.add_version(NAME, VALUE, {CURRENT}, {})
    newer = store.add_version(NAME, {**VALUE, "username": "rates_app_b"}, {CURRENT}, {})
    found = with_stage(store, NAME, CURRENT)
    assert found is not None and found.version_id == newer.version_id


def test_updating_a_missing_version_is_an_error(store: SecretStore) -> None:
    store.add_version(NAME, VALUE, {CURRENT}, {})
    with pytest.raises(SecretStoreError):
        store.update(NAME, "0" * 32, {CURRENT}, {})


def test_secret_values_are_not_in_reprs(store: SecretStore) -> None:
    version = store.add_version(NAME, VALUE, {CURRENT}, {})
    assert VALUE["password"] not in repr(version)


# -- Key Vault's own refusals, as the real service answers -----------------------------


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[tuple[KeyVaultStore, KeyVaultStandIn]]:
    with running_standin(tmp_path) as (standin, url, ca):
        client = SecretClient(
            url, StandInCredential(), verify_challenge_resource=False, connection_verify=str(ca)
        )
        yield KeyVaultStore(client), standin


def test_listing_never_reads_a_disabled_version(
    vault: tuple[KeyVaultStore, KeyVaultStandIn],
) -> None:
    store, standin = vault
    retired = store.add_version(NAME, VALUE, {PREVIOUS}, {})
    current = store.add_version(NAME, VALUE, {CURRENT}, {})
    store.update(NAME, retired.version_id, set(), {})  # disabled in the vault
    standin.requests.clear()
    assert [v.version_id for v in store.versions(NAME)] == [current.version_id]
    assert f"GET /secrets/{NAME}/{retired.version_id}" not in standin.requests
    # The vault itself refuses that read (403 SecretDisabled), so the store must not try.
    with pytest.raises(HttpResponseError) as refused:
        store.client.get_secret(NAME, retired.version_id)
    assert refused.value.status_code == 403


def test_a_disabled_version_can_be_relabelled_without_reading_it(
    vault: tuple[KeyVaultStore, KeyVaultStandIn],
) -> None:
    store, standin = vault
    version = store.add_version(NAME, VALUE, {PREVIOUS}, {})
    store.update(NAME, version.version_id, set(), {"step": "retired"})
    # A rerun retiring it again (a crash after the first retire) must not fail.
    store.update(NAME, version.version_id, set(), {"step": "retired"})
    assert f"GET /secrets/{NAME}/{version.version_id}" not in standin.requests
    assert store.versions(NAME) == []


def test_a_version_disabled_while_listing_is_skipped(
    vault: tuple[KeyVaultStore, KeyVaultStandIn],
) -> None:
    store, standin = vault
    store.add_version(NAME, VALUE, {PREVIOUS}, {})
    kept = store.add_version(NAME, VALUE, {CURRENT}, {})

    def retire_previous(name: str) -> None:  # another rotation, between list and read
        standin.secrets[name][0]["attributes"]["enabled"] = False

    standin.after_listing = retire_previous
    assert [v.version_id for v in store.versions(NAME)] == [kept.version_id]


def test_a_soft_deleted_name_is_a_clear_error_naming_the_remedy(
    vault: tuple[KeyVaultStore, KeyVaultStandIn],
) -> None:
    store, standin = vault
    store.add_version(NAME, VALUE, {CURRENT}, {})
    standin.soft_delete(NAME)
    assert store.versions(NAME) == []  # a deleted secret lists as absent (404)
    with pytest.raises(SecretStoreError) as err:
        store.add_version(NAME, VALUE, {PENDING}, {})
    message = str(err.value)
    assert "deleted but recoverable" in message and "ObjectIsDeletedButRecoverable" in message
    assert "az keyvault secret recover" in message and "az keyvault secret purge" in message
    assert VALUE["password"] not in message
    assert NAME not in standin.secrets  # nothing was written


def test_a_missing_role_is_a_clear_error(vault: tuple[KeyVaultStore, KeyVaultStandIn]) -> None:
    store, standin = vault
    store.add_version(NAME, VALUE, {CURRENT}, {})
    standin.forbidden.add(NAME)
    with pytest.raises(SecretStoreError, match="403 ForbiddenByRbac"):
        store.versions(NAME)
    with pytest.raises(SecretStoreError, match="refused to write"):
        store.add_version(NAME, VALUE, {PENDING}, {})


class NoIdentityYet:
    """DefaultAzureCredential before the app's managed identity has a role or a token."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        raise CredentialUnavailableError("no managed identity endpoint")


def test_no_token_or_no_vault_is_a_clear_error(tmp_path: Path) -> None:
    with running_standin(tmp_path) as (_, url, ca):
        client = SecretClient(
            url, NoIdentityYet(), verify_challenge_resource=False, connection_verify=str(ca)
        )
        with pytest.raises(SecretStoreError, match="CredentialUnavailableError"):
            KeyVaultStore(client).versions(NAME)
    closed = f"https://127.0.0.1:{free_port()}"
    client = SecretClient(closed, StandInCredential(), retry_total=0)
    with pytest.raises(SecretStoreError, match=r"could not write .*ServiceRequestError"):
        KeyVaultStore(client).add_version(NAME, VALUE, {CURRENT}, {})


def test_a_version_seeded_by_hand_is_read_with_the_vault_creation_time(
    vault: tuple[KeyVaultStore, KeyVaultStandIn],
) -> None:
    """`az keyvault secret set --tags stages=current`, as the README's first run does."""
    store, _ = vault
    store.client.set_secret(NAME, json.dumps(VALUE), tags={"stages": CURRENT})
    found = with_stage(store, NAME, CURRENT)
    assert found is not None and found.value == VALUE
    assert abs(found.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    store.update(NAME, found.version_id, {PREVIOUS}, {})  # relabelling keeps working
    assert [v.stages for v in store.versions(NAME)] == [frozenset({PREVIOUS})]


# -- the local file store's own promises -------------------------------------------------


def test_local_files_are_private_and_encrypted(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "secrets.enc")
    store.add_version(NAME, VALUE, {CURRENT}, {})
    for path in (store.path, store.key_path):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert VALUE["password"].encode() not in store.path.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_wrong_key_is_a_clear_error(tmp_path: Path) -> None:
    LocalFileStore(tmp_path / "secrets.enc").add_version(NAME, VALUE, {CURRENT}, {})
    other_key = tmp_path / "other.key"
    LocalFileStore(tmp_path / "other.enc", other_key).add_version(NAME, VALUE, {CURRENT}, {})
    with pytest.raises(SecretStoreError, match="cannot be decrypted") as err:
        LocalFileStore(tmp_path / "secrets.enc", other_key).versions(NAME)
    assert VALUE["password"] not in str(err.value)


def _add_many(path: str, count: int) -> None:
    store = LocalFileStore(Path(path))
    for index in range(count):
        store.add_version(
            NAME, {"username": str(os.getpid()), "password": str(index)}, {PREVIOUS}, {}
        )


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    LocalFileStore(path).add_version(NAME, VALUE, {CURRENT}, {})  # creates the key first
    workers = [multiprocessing.Process(target=_add_many, args=(str(path), 15)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert len(LocalFileStore(path).versions(NAME)) == 1 + 3 * 15
