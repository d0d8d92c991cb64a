"""Versioned secrets with stage labels (current / pending / previous), behind one interface.

Two stores implement it: an encrypted local file for development, and Azure Key Vault
(labels kept as tags, one Key Vault version per credential). Rotation relies only on
this interface, so the same contract tests run against both.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.fernet import Fernet, InvalidToken

CURRENT, PENDING, PREVIOUS = "current", "pending", "previous"
STAGES = (CURRENT, PENDING, PREVIOUS)


class SecretStoreError(RuntimeError):
    """The store cannot be read or written; the message never holds a secret value."""


@dataclass(frozen=True)
class SecretVersion:
    version_id: str
    created_at: datetime
    value: Mapping[str, str] = field(repr=False)
    stages: frozenset[str] = frozenset()
    tags: Mapping[str, str] = field(default_factory=dict)

    def login(self) -> dict[str, str]:
        """The libpq ``user`` and ``password`` of a login kept in this version."""
        return {"user": self.value["username"], "password": self.value["password"]}


def new_password() -> str:
    """A fresh random password: 256 bits, URL-safe (no quoting problems anywhere)."""
    return secrets.token_urlsafe(32)


class SecretStore(Protocol):
    def versions(self, name: str) -> list[SecretVersion]:
        """Every version of ``name`` that holds a stage, newest first."""

    def add_version(
        self, name: str, value: Mapping[str, str], stages: set[str], tags: Mapping[str, str]
    ) -> SecretVersion:
        """Store a new version; its id is the store's own."""

    def update(self, name: str, version_id: str, stages: set[str], tags: Mapping[str, str]) -> None:
        """Replace the stages and tags of one version; the value never changes."""


def with_stage(store: SecretStore, name: str, stage: str) -> SecretVersion | None:
    """The newest version holding ``stage``: while labels move, newest wins."""
    return next((v for v in store.versions(name) if stage in v.stages), None)


class LocalFileStore:
    """Secrets in one Fernet-encrypted file: 0600, atomic replace, one writer at a time.

    The key lives in its own 0600 file beside it (created on first use), so a copy of
    the data file alone reveals nothing.
    """

    def __init__(self, path: Path, key_path: Path | None = None) -> None:
        self.path = path
        self.key_path = key_path or path.with_name(path.name + ".key")
        self._lock_path = path.with_name(path.name + ".lock")

    def _fernet(self) -> Fernet:
        if not self.key_path.exists():
            self.key_path.parent.mkdir(parents=True, exist_ok=True)
            write_private(self.key_path, Fernet.generate_key())
        return Fernet(self.key_path.read_bytes().strip())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data: dict[str, Any] = json.loads(self._fernet().decrypt(self.path.read_bytes()))
        except InvalidToken:
            raise SecretStoreError(
                f"{self.path} cannot be decrypted with {self.key_path}"
            ) from None
        return data

    def _save(self, data: dict[str, Any]) -> None:
        write_private(self.path, self._fernet().encrypt(json.dumps(data).encode()))

    def versions(self, name: str) -> list[SecretVersion]:
        with self._locked():
            raw = self._load().get(name, [])
        return [_version(item) for item in reversed(raw) if item["stages"]]

    def add_version(
        self, name: str, value: Mapping[str, str], stages: set[str], tags: Mapping[str, str]
    ) -> SecretVersion:
        item = {
            "version_id": uuid.uuid4().hex,
            "created_at": datetime.now(UTC).isoformat(),
            "value": dict(value),
            "stages": sorted(stages),
            "tags": dict(tags),
        }
        with self._locked():
            data = self._load()
            data.setdefault(name, []).append(item)
            self._save(data)
        return _version(item)

    def update(self, name: str, version_id: str, stages: set[str], tags: Mapping[str, str]) -> None:
        with self._locked():
            data = self._load()
            for item in data.get(name, []):
                if item["version_id"] == version_id:
                    item["stages"], item["tags"] = sorted(stages), dict(tags)
                    self._save(data)
                    return
        raise SecretStoreError(f"secret {name!r} has no version {version_id}")


def _version(item: Mapping[str, Any]) -> SecretVersion:
    return SecretVersion(
        item["version_id"],
        datetime.fromisoformat(item["created_at"]),
        item["value"],
        frozenset(item["stages"]),
        item["tags"],
    )


def write_private(path: Path, content: bytes) -> None:
    """Write atomically: a 0600 temporary file, fsync, rename over, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
