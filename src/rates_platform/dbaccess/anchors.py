"""Append-only sinks outside the database for audit chain anchors.

An anchor is the chain head (id, hash, event count, time). Each stored anchor line also
carries the SHA-256 of the line before it, so an edited or removed anchor line is
reported too; what the sink itself must guarantee is that lines can only be appended:
locally a file (``file:PATH``), in Azure an append blob in a container with a locked
time-based retention policy that allows protected append writes
(``blob:https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB``): nobody, not even the
storage account's owner, can overwrite or delete it while the policy holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobClient

from rates_platform.dbaccess.chain import GENESIS, Anchor


class AnchorError(RuntimeError):
    """The sink cannot be used, or its own line chain does not hold."""


class AnchorSink(Protocol):
    def append(self, anchor: Anchor) -> None:
        """Store one anchor durably after every earlier one."""

    def read(self, *, missing_ok: bool = False) -> list[Anchor]:
        """Every anchor, oldest first; AnchorError if a line was edited or removed, or
        if there is no anchor at all (unless ``missing_ok``: before the first one)."""


def line_hash(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()


def encode(anchor: Anchor, prev: str) -> str:
    return json.dumps(
        {"id": anchor.id, "hash": anchor.hash, "rows": anchor.rows, "at": anchor.at, "prev": prev},
        separators=(",", ":"),
    )


def decode(lines: list[str], where: str, missing_ok: bool = True) -> list[Anchor]:
    """Parse anchor lines and check that each follows the one before it. No line at all
    is an error unless ``missing_ok``: a deleted sink must not pass for a new one."""
    if not lines and not missing_ok:
        raise AnchorError(f"{where}: no anchor (never anchored, or the anchors were removed)")
    anchors, prev = [], GENESIS
    for number, line in enumerate(lines, 1):
        try:
            fields = json.loads(line)
            anchor = Anchor(
                int(fields["id"]), str(fields["hash"]), int(fields["rows"]), str(fields["at"])
            )
            linked = fields["prev"]
        except (ValueError, TypeError, KeyError):
            raise AnchorError(f"{where}: line {number} is not an anchor") from None
        if linked != prev:
            after = f"line {number - 1}" if number > 1 else "the start"
            raise AnchorError(
                f"{where}: line {number} does not follow {after} "
                "(an anchor line was edited or removed)"
            )
        anchors.append(anchor)
        prev = line_hash(line)
    return anchors


class FileSink:
    """JSON lines in a local file: created 0600, opened O_APPEND, fsynced, flock'ed
    so two writers cannot both chain to the same previous line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _lines(self) -> list[str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AnchorError(f"{self.path}: cannot read ({exc.strerror})") from None
        if text and not text.endswith("\n"):
            raise AnchorError(f"{self.path}: the last line is incomplete")
        return text.splitlines()

    def read(self, *, missing_ok: bool = False) -> list[Anchor]:
        return decode(self._lines(), str(self.path), missing_ok)

    def append(self, anchor: Anchor) -> None:
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AnchorError(f"{self.path}: cannot open ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            lines = self._lines()
            decode(lines, str(self.path))  # never extend a chain that no longer holds
            prev = line_hash(lines[-1]) if lines else GENESIS
            os.write(fd, (encode(anchor, prev) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


class AppendBlobSink:
    """JSON lines in an Azure append blob; each append is conditional on the length read,
    so two writers cannot both chain to the same previous line."""

    def __init__(self, blob: BlobClient) -> None:
        self.blob = blob
        self.where = blob.url

    def _text(self) -> str:
        try:
            data: bytes = self.blob.download_blob().readall()
        except ResourceNotFoundError:
            return ""
        except AzureError as exc:
            raise AnchorError(f"{self.where}: cannot read ({type(exc).__name__})") from None
        return data.decode()

    def read(self, *, missing_ok: bool = False) -> list[Anchor]:
        return decode(self._text().splitlines(), self.where, missing_ok)

    def append(self, anchor: Anchor) -> None:
        text = self._text()
        lines = text.splitlines()
        decode(lines, self.where)
        prev = line_hash(lines[-1]) if lines else GENESIS
        block = (encode(anchor, prev) + "\n").encode()
        try:
            if not text:
                with contextlib.suppress(ResourceExistsError):
                    self.blob.create_append_blob(if_none_match="*")
            self.blob.append_block(block, appendpos_condition=len(text.encode()))
        except AzureError as exc:
            raise AnchorError(
                f"{self.where}: cannot append ({type(exc).__name__}; another anchor may have "
                "been appended at the same time: rerun)"
            ) from None


def open_sink(spec: str, **client_options: Any) -> AnchorSink:
    """``file:PATH`` or ``blob:https://...``; anything else is a ValueError."""
    kind, _, where = spec.partition(":")
    if kind == "file" and where:
        return FileSink(Path(where))
    if kind == "blob" and where.startswith("https://"):
        # Managed identity in Azure, the developer's login elsewhere; never a stored key.
        credential = client_options.pop("credential", None) or DefaultAzureCredential()
        return AppendBlobSink(BlobClient.from_blob_url(where, credential, **client_options))
    raise ValueError(f"anchor sink {spec!r}: expected file:PATH or blob:https://ACCOUNT/...")
