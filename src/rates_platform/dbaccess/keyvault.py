"""Azure Key Vault as a SecretStore: one Key Vault version per credential, labels as tags.

Versions that lose every label are disabled in the vault, so listing stays short and
no retired credential can be read back by the API. The vault refuses to read a disabled
version (403, SecretDisabled), so nothing here reads one: listing skips them and labels
are moved using the version's listed properties, never its value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.keyvault.secrets import SecretClient, SecretProperties

from rates_platform.dbaccess.secrets import SecretStoreError, SecretVersion

STAGES_TAG = "stages"
# Key Vault's own creation time has whole seconds; two versions in one second must
# still sort, so each carries its own microsecond timestamp.
CREATED_TAG = "created"


def _split(properties: SecretProperties) -> tuple[frozenset[str], datetime, dict[str, str]]:
    tags = dict(properties.tags or {})
    stages = frozenset(filter(None, tags.pop(STAGES_TAG, "").split(",")))
    # A version seeded by hand (`az keyvault secret set --tags stages=current`) has no
    # created tag: the vault's own creation time orders it.
    stamp = tags.pop(CREATED_TAG, None)
    created = datetime.fromisoformat(stamp) if stamp else properties.created_on
    if created is None:
        raise SecretStoreError(f"a version of {properties.name!r} has no creation time")
    return stages, created, tags


def _tags(stages: set[str], created: datetime, tags: Mapping[str, str]) -> dict[str, str]:
    return {**tags, STAGES_TAG: ",".join(sorted(stages)), CREATED_TAG: created.isoformat()}


def _code(exc: HttpResponseError) -> str:
    """The vault's most specific error code (e.g. SecretDisabled, ForbiddenByRbac)."""
    if exc.error is None:
        return str(exc.status_code)
    inner = (exc.error.innererror or {}).get("code")
    return str(inner or exc.error.code)


def _store_error(name: str, action: str, exc: AzureError) -> SecretStoreError:
    """One clear error for anything the SDK raises: the vault's refusal (its code), or
    no answer at all (no network, no token yet for this identity)."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return SecretStoreError(
            f"Key Vault refused to {action} secret {name!r}: {exc.status_code} {_code(exc)}"
            " (does this identity hold a Key Vault secrets role on it?)"
        )
    return SecretStoreError(
        f"Key Vault could not {action} secret {name!r}: {type(exc).__name__}"
        " (is the vault reachable, and does this identity get a token?)"
    )


class KeyVaultStore:
    def __init__(self, client: SecretClient) -> None:
        self.client = client

    def _listed(self, name: str) -> list[SecretProperties]:
        """Every version's properties, disabled ones too; no value is read. [] if none."""
        try:
            return list(self.client.list_properties_of_secret_versions(name))
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise _store_error(name, "list", exc) from None

    def versions(self, name: str) -> list[SecretVersion]:
        result = []
        for properties in self._listed(name):
            if not properties.enabled:
                continue
            stages, created, tags = _split(properties)
            try:
                secret = self.client.get_secret(name, properties.version)
            except AzureError as exc:
                if isinstance(exc, HttpResponseError) and _code(exc) == "SecretDisabled":
                    continue  # retired since it was listed
                raise _store_error(name, "read", exc) from None
            if secret.value is None or properties.version is None:
                raise SecretStoreError(f"secret {name!r} has a version without a value")
            result.append(
                SecretVersion(properties.version, created, json.loads(secret.value), stages, tags)
            )
        return sorted(result, key=lambda v: v.created_at, reverse=True)

    def add_version(
        self, name: str, value: Mapping[str, str], stages: set[str], tags: Mapping[str, str]
    ) -> SecretVersion:
        created = datetime.now(UTC)
        try:
            secret = self.client.set_secret(
                name,
                json.dumps(dict(value)),
                content_type="application/json",
                tags=_tags(stages, created, tags),
            )
        except ResourceExistsError as exc:
            vault = self.client.vault_url
            raise SecretStoreError(
                f"secret {name!r} is deleted but recoverable in {vault} ({_code(exc)}), so its"
                " name cannot be reused: recover it to keep its versions (az keyvault secret"
                f" recover --id {vault}/secrets/{name}) or purge it to start afresh"
                f" (az keyvault secret purge --id {vault}/deletedsecrets/{name}), then rerun"
            ) from None
        except AzureError as exc:
            raise _store_error(name, "write", exc) from None
        if secret.properties.version is None:
            raise SecretStoreError(f"Key Vault returned no version for {name!r}")
        return SecretVersion(
            secret.properties.version, created, dict(value), frozenset(stages), dict(tags)
        )

    def update(self, name: str, version_id: str, stages: set[str], tags: Mapping[str, str]) -> None:
        """Relabel from the listed properties: works on a disabled version too (a rerun
        retiring one again), where reading it would be refused."""
        properties = next((p for p in self._listed(name) if p.version == version_id), None)
        if properties is None:
            raise SecretStoreError(f"secret {name!r} has no version {version_id}")
        _, created, _ = _split(properties)
        try:
            self.client.update_secret_properties(
                name, version_id, tags=_tags(stages, created, tags), enabled=bool(stages)
            )
        except ResourceNotFoundError:
            raise SecretStoreError(f"secret {name!r} has no version {version_id}") from None
        except AzureError as exc:
            raise _store_error(name, "update", exc) from None
