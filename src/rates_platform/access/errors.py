"""Refusals of the access workflow, mapped from the database's own errors.

The rules live in PostgreSQL (migration 0009); each refusal carries the server's
one-line reason, which never holds a secret.
"""

from __future__ import annotations


class AccessError(Exception):
    """Bad input or a refused step: nothing changed."""

    exit_code = 6


class NotAllowed(AccessError):
    """The caller may not do this (self-approval, not an approver, not an admin)."""

    exit_code = 7


class NotFound(AccessError):
    exit_code = 8


class WrongState(AccessError):
    """The request is not in a state this step applies to (decided, expired, ...)."""

    exit_code = 9
