"""The audit chain's rules, without a database: how a row is hashed, and what a chain
must satisfy against itself, its head and the anchors kept outside the database."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

GENESIS = "0" * 64


@dataclass(frozen=True)
class Row:
    """One stored event; ``details`` is PostgreSQL's text of its jsonb value."""

    id: int
    at: datetime
    actor: str
    event_type: str
    target: str
    outcome: str
    details: str
    prev_hash: str
    hash: str

    def fields(self) -> tuple[str, ...]:
        at = self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return (
            str(self.id),
            at,
            self.actor,
            self.event_type,
            self.target,
            self.outcome,
            self.details,
        )


def netstring(field: str) -> bytes:
    """``<byte length>:<UTF-8 bytes>,``: no field content can move a field boundary."""
    data = field.encode()
    return b"%d:%s," % (len(data), data)


def hash_v1(prev_hash: str, row: Row) -> str:
    """Rows written before migration 0007: fields joined by ``|``, unescaped (ambiguous)."""
    return hashlib.sha256("|".join((prev_hash, *row.fields())).encode()).hexdigest()


def hash_v2(prev_hash: str, row: Row) -> str:
    """Every field length-prefixed (audit.row_hash in SQL computes the same)."""
    return hashlib.sha256(b"".join(netstring(f) for f in (prev_hash, *row.fields()))).hexdigest()


HASHES: dict[int, Callable[[str, Row], str]] = {1: hash_v1, 2: hash_v2}


@dataclass(frozen=True)
class Anchor:
    """The chain head as seen at ``at``, kept where the database cannot rewrite it."""

    id: int
    hash: str
    rows: int
    at: str

    def describe(self) -> str:
        return f"the anchor of {self.at} (event {self.id}, {self.rows} events)"


@dataclass(frozen=True)
class Verification:
    rows: int
    first_broken_id: int | None
    reason: str | None
    anchors: int = 0

    @property
    def intact(self) -> bool:
        return self.first_broken_id is None


def format_of(event_id: int, formats: Sequence[tuple[int, int]]) -> int | None:
    """The highest hash version whose first id is not above ``event_id``."""
    versions = [version for version, first_id in formats if first_id <= event_id]
    return max(versions, default=None)


class _Broken(Exception):
    def __init__(self, event_id: int, reason: str) -> None:
        super().__init__(reason)
        self.event_id, self.reason = event_id, reason


def verify(
    rows: Iterable[Row],
    head: tuple[int, str],
    formats: Sequence[tuple[int, int]],
    anchors: Sequence[Anchor] = (),
) -> Verification:
    """Recompute every hash; name the first row at which the chain, its head or an
    anchor does not hold. ``rows`` in id order; ``head`` as (last_id, last_hash)."""
    walk = _Walk(formats, anchors)
    try:
        walk.start()
        for row in rows:
            walk.step(row)
        walk.end(head)
    except _Broken as broken:
        return Verification(walk.count, broken.event_id, broken.reason, len(anchors))
    return Verification(walk.count, None, None, len(anchors))


class _Walk:
    """The chain read so far, and the anchors it has still to meet."""

    def __init__(self, formats: Sequence[tuple[int, int]], anchors: Sequence[Anchor]) -> None:
        self.formats = formats
        self.pending = sorted(anchors, key=lambda a: a.id)
        self.expected_prev, self.count, self.last_id = GENESIS, 0, 0

    def start(self) -> None:
        for anchor in self.pending:
            if anchor.id == 0 and anchor.hash != GENESIS:
                raise _Broken(0, f"{anchor.describe()} has a hash for no event")
        self.pending = [a for a in self.pending if a.id > 0]

    def step(self, row: Row) -> None:
        if self.pending and self.pending[0].id < row.id:
            anchor = self.pending[0]
            reason = f"gone, but {anchor.describe()} recorded it: history was rewritten"
            raise _Broken(anchor.id, reason)
        self.count += 1
        if row.prev_hash != self.expected_prev:
            raise _Broken(row.id, "does not follow the previous row")
        version = format_of(row.id, self.formats)
        if version not in HASHES:
            raise _Broken(row.id, f"no known hash format covers it ({version})")
        if HASHES[version](row.prev_hash, row) != row.hash:
            raise _Broken(row.id, "content does not match its hash")
        self.expected_prev, self.last_id = row.hash, row.id
        while self.pending and self.pending[0].id == row.id:
            anchor = self.pending.pop(0)
            if anchor.hash != row.hash:
                reason = f"its hash is not the one {anchor.describe()} recorded: history up to"
                raise _Broken(row.id, f"{reason} here was rewritten and rehashed")
            if anchor.rows != self.count:
                reason = f"{self.count} events up to here, but {anchor.describe()} counted"
                raise _Broken(row.id, f"{reason} otherwise: history was rewritten")

    def end(self, head: tuple[int, str]) -> None:
        if self.pending:
            reason = f"the chain ends here, but {self.pending[-1].describe()} is later"
            raise _Broken(self.last_id, f"{reason}: the tail was removed or the head reset")
        if head != (self.last_id, self.expected_prev):
            reason = "rows after this one were removed (the head names another)"
            raise _Broken(self.last_id, reason)
