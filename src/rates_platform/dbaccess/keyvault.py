"""Azure Key Vault as a SecretStore: one Key Vault version per credential, labels as tags.

Versions that lose every label are disabled in the vault, so listing stays short and
no retired credential can be read back by the API.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.secrets import SecretClient, SecretProperties

from rates_platform.dbaccess.secrets import SecretStoreError, SecretVersion

STAGES_TAG = "stages"
# Key Vault's own creation time has whole seconds; two versions in one second must
# still sort, so each carries its own microsecond timestamp.
CREATED_TAG = "created"


def _split(properties: SecretProperties) -> tuple[frozenset[str], datetime, dict[str, str]]:
    tags = dict(properties.tags or {})
    stages = frozenset(filter(None, tags.pop(STAGES_TAG, "").split(",")))
    created = datetime.fromisoformat(tags.pop(CREATED_TAG))
    return stages, created, tags


def _tags(stages: set[str], created: datetime, tags: Mapping[str, str]) -> dict[str, str]:
    return {**tags, STAGES_TAG: ",".join(sorted(stages)), CREATED_TAG: created.isoformat()}


class KeyVaultStore:
    def __init__(self, client: SecretClient) -> None:
        self.client = client

    def versions(self, name: str) -> list[SecretVersion]:
        try:
            listed = [p for p in self.client.list_properties_of_secret_versions(name) if p.enabled]
        except ResourceNotFoundError:
            return []
        result = []
        for properties in listed:
            stages, created, tags = _split(properties)
            secret = self.client.get_secret(name, properties.version)
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
        secret = self.client.set_secret(
            name,
            json.dumps(dict(value)),
            content_type="application/json",
            tags=_tags(stages, created, tags),
        )
        if secret.properties.version is None:
            raise SecretStoreError(f"Key Vault returned no version for {name!r}")
        return SecretVersion(
            secret.properties.version, created, dict(value), frozenset(stages), dict(tags)
        )

    def update(self, name: str, version_id: str, stages: set[str], tags: Mapping[str, str]) -> None:
        try:
            properties = self.client.get_secret(name, version_id).properties
            _, created, _ = _split(properties)
            self.client.update_secret_properties(
                name, version_id, tags=_tags(stages, created, tags), enabled=bool(stages)
            )
        except ResourceNotFoundError:
            raise SecretStoreError(f"secret {name!r} has no version {version_id}") from None
