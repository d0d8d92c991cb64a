"""Pure rules of API keys: their format, their hash, whether one grants a request.

A key is ``rk_<prefix>_<secret>``: the 12-character prefix is public (stored, shown in
listings, used to find the row); the secret is 256 bits from ``secrets``. Only the
SHA-256 of the whole key is stored: a slow hash would add nothing for a random
256-bit secret and would cost every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from limits import parse_many

from rates_platform.apikeys.errors import InvalidKeyRequest

KEY_PATTERN = re.compile(r"rk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
SCOPE_PATTERN = re.compile(r"[a-z][a-z0-9]*:[a-z][a-z0-9]*")
MAX_NAME_LENGTH = 100
# Bounds of one limit: a quota of 0 would refuse everyone (AUTH_MODE does that), and
# the counters are SQLite integers (below 2**63) and window ends in seconds.
MAX_LIMIT_AMOUNT = 10**9
MAX_LIMIT_WINDOW_SECONDS = 366 * 86400


def check_limits(spec: str) -> None:
    """Raise ValueError unless ``spec`` is limits like 100/second;3000/minute, each
    with a quota from 1 to MAX_LIMIT_AMOUNT and a window of at most a year."""
    for item in parse_many(spec):
        if not 1 <= item.amount <= MAX_LIMIT_AMOUNT:
            raise ValueError(spec)
        if not 1 <= item.get_expiry() <= MAX_LIMIT_WINDOW_SECONDS:
            raise ValueError(spec)


@dataclass(frozen=True)
class NewKey:
    """A key as created: ``key`` is shown once and never stored."""

    key: str
    prefix: str
    key_hash: bytes


@dataclass(frozen=True)
class StoredKey:
    """What the API reads about a key (never the key)."""

    id: int
    prefix: str
    key_hash: bytes
    scopes: tuple[str, ...]
    rate_limit: str | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> NewKey:
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(12))
    key = f"rk_{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(key, prefix, key_hash(key))


def prefix_of(presented: str) -> str | None:
    """The public prefix of a well-formed key, else None (so junk costs no query)."""
    match = KEY_PATTERN.fullmatch(presented)
    return match.group(1) if match else None


def matches(stored: StoredKey, presented: str) -> bool:
    return hmac.compare_digest(stored.key_hash, key_hash(presented))


def check_new(name: str, scopes: list[str], rate_limit: str | None, days: int | None) -> None:
    """Refuse a malformed request before anything is written."""
    if not 1 <= len(name) <= MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidKeyRequest(f"--name must be 1 to {MAX_NAME_LENGTH} printable characters")
    if not scopes or not all(SCOPE_PATTERN.fullmatch(s) for s in scopes):
        raise InvalidKeyRequest("--scopes must be like rates:read (comma-separated)")
    if days is not None and not 1 <= days <= 3660:
        raise InvalidKeyRequest("--expires-in-days must be from 1 to 3660")
    if rate_limit is not None:
        try:
            check_limits(rate_limit)
        except ValueError:
            raise InvalidKeyRequest(
                "--rate-limit must be like 100/second;3000/minute (quotas from 1 to 10^9,"
                " windows up to a year)"
            ) from None
