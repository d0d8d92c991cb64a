"""Errors of the API-key capability; messages never hold a key."""

from __future__ import annotations


class InvalidKeyRequest(ValueError):
    """A `rates keys` argument is malformed; nothing was changed."""


class KeyNotFound(LookupError):
    """No key has that id."""
