"""Open a secret store from a one-line spec: ``file:PATH`` or ``keyvault:https://...``."""

from __future__ import annotations

from pathlib import Path

from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

from rates_platform.dbaccess.keyvault import KeyVaultStore
from rates_platform.dbaccess.secrets import LocalFileStore, SecretStore


def open_store(spec: str) -> SecretStore:
    kind, _, where = spec.partition(":")
    if kind == "file" and where:
        return LocalFileStore(Path(where))
    if kind == "keyvault" and where.startswith("https://"):
        # Managed identity in Azure, the developer's login elsewhere; never a stored key.
        return KeyVaultStore(SecretClient(where, DefaultAzureCredential()))
    raise ValueError(f"secret store {spec!r}: expected file:PATH or keyvault:https://VAULT")
