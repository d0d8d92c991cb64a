"""`rates keys create|list|revoke`: run as the administrator (DATABASE_URL)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg

from rates_platform.apikeys import service
from rates_platform.apikeys.errors import InvalidKeyRequest, KeyNotFound

_LIST_HEADER = ("id", "prefix", "name", "scopes", "rate_limit", "created", "expires", "revoked")


def add_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="create a key; it is printed once, only then")
    create.add_argument("--name", required=True, help="who the key is for")
    create.add_argument("--scopes", default="rates:read", help="comma-separated scopes")
    create.add_argument("--expires-in-days", type=int, default=None)
    create.add_argument("--rate-limit", default=None, help="overrides RATE_LIMIT for this key")
    actions.add_parser("list", help="every key's id, prefix, scopes and state (never a key)")
    revoke = actions.add_parser("revoke", help="revoke a key (the API refuses it within 5 s)")
    revoke.add_argument("id", type=int)


def run(args: argparse.Namespace, conninfo: str) -> int:
    """Exit 0 done, 2 bad arguments, 4 no such key."""
    try:
        with psycopg.connect(conninfo) as conn:
            if args.keys_command == "create":
                scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
                key_id, key = service.create(
                    conn, args.name, scopes, args.rate_limit, args.expires_in_days
                )
                print(f"id: {key_id}\nkey: {key}")
                print(
                    "store this key now: it is not kept and cannot be shown again", file=sys.stderr
                )
            elif args.keys_command == "list":
                print("\t".join(_LIST_HEADER))
                for row in service.listing(conn):
                    print("\t".join("-" if v is None else str(v) for v in row))
            else:
                service.revoke(conn, args.id)
                print(f"revoked key {args.id}")
    except InvalidKeyRequest as exc:
        print(f"rates keys: {exc}", file=sys.stderr)
        return 2
    except KeyNotFound as exc:
        print(f"rates keys: {exc}", file=sys.stderr)
        return 4
    return 0
