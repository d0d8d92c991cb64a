"""Three people drive `dbaccess` (real subprocesses, as documented) through the whole
access cycle while the API serves under load: not one API request may fail."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from rates_platform.dbaccess.secrets import new_password
from tests.integration.access_support import (
    POLICY_FILE,
    AccessDb,
    access_server,
    prepare_access_db,
)
from tests.support import ApiServer, Load

pytestmark = pytest.mark.e2e
RATES = "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=china_main&dest_code=EETLL"
EXIT_REFUSED, EXIT_NOT_ALLOWED = 6, 7


@dataclass(frozen=True)
class Cli:
    """`dbaccess` as one person: their login through PG* and their own pgpass file."""

    env: dict[str, str]

    def run(self, *args: str, expect: int = 0) -> str:
        """The command's output: stdout, or stderr when it is expected to fail."""
        result = subprocess.run(
            [sys.executable, "-m", "rates_platform.dbaccess.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == expect, (args, result.stdout, result.stderr)
        return result.stdout if expect == 0 else result.stderr


def person_cli(adb: AccessDb, tmp: Path, name: str, password: str, notify: Path) -> Cli:
    pgpass = tmp / f"{name}.pgpass"
    pgpass.write_text(f"127.0.0.1:{adb.server.port}:{adb.db.name}:{name}:{password}\n")
    pgpass.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    env |= {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(adb.server.port),
        "PGDATABASE": adb.db.name,
        "PGUSER": name,
        "PGPASSFILE": str(pgpass),
        "ACCESS_NOTIFY_FILE": str(notify),
        "ACCESS_SERVER_LOG": str(adb.server.log_file),
    }
    return Cli(env)


@pytest.fixture
def adb() -> Iterator[AccessDb]:
    with access_server(18) as server:
        yield prepare_access_db(server, 18, policy=False)


def test_three_people_through_the_whole_cycle_while_the_api_serves(
    adb: AccessDb, tmp_path: Path
) -> None:
    notify = tmp_path / "notifications.jsonl"
    admin = Cli(
        {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        | {"DATABASE_URL": adb.admin, "ACCESS_NOTIFY_FILE": str(notify)}
    )
    api = ApiServer(adb.db.app)
    try:
        with Load(api.base, RATES, clients=4) as load:
            started = datetime.now(UTC) - timedelta(seconds=1)
            assert "+ rates_operator" in admin.run("policy", "apply", "--file", str(POLICY_FILE))
            assert admin.run("policy", "apply", "--file", str(POLICY_FILE)).strip() == "no change"
            passwords = {name: new_password() for name in ("ann", "bea", "cid")}
            for name, password in passwords.items():
                secret = tmp_path / f"{name}.password"
                secret.write_text(password + "\n")
                flags = ["--approver"] if name != "ann" else []
                admin.run("users", "add", name, "--password-file", str(secret), *flags)
            ann, bea, cid = (
                person_cli(adb, tmp_path, name, passwords[name], notify) for name in passwords
            )
            out = admin.run("users", "add", "erin", "--entra", expect=EXIT_REFUSED)
            assert "pgaadauth_create_principal does not exist" in out
            admin.run("users", "add", "erin", expect=EXIT_REFUSED)  # no password, no --entra
            listed = json.loads(admin.run("users", "list", "--json"))
            assert {(p["name"], p["approver"]) for p in listed} == {
                ("ann", False),
                ("bea", True),
                ("cid", True),
            }

            # ann asks for the operator role (two approvals) for six seconds.
            out = ann.run(
                "access",
                "request",
                "--role",
                "rates_operator",
                "--minutes",
                "0.1",
                "--reason",
                "correct a mistyped January price",
            )
            assert "pending" in out and "ann_r1" in out
            ann.run("access", "approve", "1", expect=EXIT_NOT_ALLOWED)  # not her own
            assert "pending" in bea.run("access", "approve", "1")
            pending = json.loads(cid.run("access", "list", "--pending", "--json"))
            assert [(r["id"], r["approvers"]) for r in pending] == [(1, ["bea"])]
            assert "granted" in cid.run("access", "approve", "1")

            # ann uses it: libpq finds the grant login's password in her pgpass file.
            grant = psycopg.connect(
                host="127.0.0.1",
                port=adb.server.port,
                dbname=adb.db.name,
                user="ann_r1",
                passfile=ann.env["PGPASSFILE"],
                autocommit=True,
            )
            grant.execute("UPDATE prices SET price = price WHERE orig_code = 'e2e-marker'")
            time.sleep(6.5)
            assert "expired: request 1 ann_r1" in bea.run("access", "expire")
            with pytest.raises(psycopg.OperationalError):
                grant.execute("SELECT 1")
            grant.close()
            activity = bea.run("access", "activity", "1")
            assert "e2e-marker" in activity

            # A denial, and break glass with its review.
            ann.run(
                "access",
                "request",
                "--role",
                "rates_reader",
                "--minutes",
                "5",
                "--reason",
                "curiosity",
            )
            bea.run("access", "deny", "2", "--reason", "no ticket")
            out = ann.run(
                "access",
                "request",
                "--role",
                "rates_reader",
                "--minutes",
                "2",
                "--reason",
                "the API answers wrong prices",
                "--emergency",
            )
            assert "granted" in out
            assert [
                r["id"] for r in json.loads(cid.run("access", "list", "--unreviewed", "--json"))
            ] == [3]
            cid.run("access", "review", "3", "--note", "justified, see incident 7")
            assert json.loads(cid.run("access", "list", "--unreviewed", "--json")) == []
            admin.run("access", "revoke", "3", "--reason", "incident closed")

            report = list(
                csv.DictReader(
                    io.StringIO(
                        admin.run(
                            "access", "report", "--since", started.isoformat(), "--format", "csv"
                        )
                    )
                )
            )
            assert [(r["id"], r["status"], r["approvers"]) for r in report] == [
                ("1", "expired", "bea;cid"),
                ("2", "denied", ""),
                ("3", "revoked", ""),
            ]
            admin.run("users", "remove", "ann")
            assert "intact" in admin.run("audit", "verify")
            time.sleep(1)
        assert load.results and set(load.results) == {"200"}, load.results
    finally:
        api.stop()
    kinds = [json.loads(line)["event"] for line in notify.read_text().splitlines()]
    for kind in (
        "access.request",
        "access.approve",
        "access.grant",
        "access.expired",
        "access.deny",
        "access.emergency",
        "access.review",
        "access.revoke",
        "user.add",
        "user.remove",
        "policy.change",
    ):
        assert kind in kinds, kind
