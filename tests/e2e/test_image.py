"""The image as the Dockerfile builds and runs it, emulated without a container engine.

One install per module, by the build stage's own `uv sync` lines (uv.lock, hash-checked,
the app not editable); then the runtime stage's ENTRYPOINT + CMD started with its ENV,
WORKDIR and USER (uid 10001 when the tests run as root), its HEALTHCHECK run against it,
and a verify-full TLS login from the installed psycopg wheel with the image's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import yaml
from psycopg import sql

from rates_platform.dbaccess.roles import scram_verifier
from tests.image import (
    DOCKERFILE,
    InstalledImage,
    healthcheck_command,
    install,
    parse,
    start_command,
)
from tests.policy import policy
from tests.support import ROOT, PreparedDatabase, free_port, start_server
from tests.tls import SYSTEM_BUNDLE, TlsPostgres, bundle_with, running_tls_postgres

pytestmark = pytest.mark.e2e

QUERY = "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=EETLL"
TLS_USER, TLS_PASSWORD = "rates_tls", "tls-test-password"


@pytest.fixture(scope="module")
def image() -> Iterator[InstalledImage]:
    root = Path(tempfile.mkdtemp(prefix="rates-image-"))
    root.chmod(0o755)  # the image's user must reach its files, as in the image
    try:
        yield install(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _identity(image: InstalledImage) -> dict[str, object]:
    """Run as the image's USER when we can (root), as the container would."""
    if os.geteuid() != 0:
        print(f"not root: the image's processes run as uid {os.geteuid()}, not {image.user}")
        return {}
    uid, _, gid = image.user.partition(":")
    return {"user": int(uid), "group": int(gid or uid), "extra_groups": []}


class Container:
    """ENTRYPOINT + CMD with the image's environment plus what `docker run -e` adds."""

    def __init__(
        self,
        image: InstalledImage,
        without: tuple[str, ...] = (),
        command: list[str] | None = None,
        **run_env: str,
    ) -> None:
        """``without``: image ENV names left out (to run the image as it was before them);
        ``command``: what replaces ENTRYPOINT + CMD (as compose's entrypoint/command)."""
        self.image = image
        self.port = free_port()
        # HOST: a container's 0.0.0.0 is its own network namespace; here, loopback only.
        self.env = {**image.env, "PORT": str(self.port), "HOST": "127.0.0.1", **run_env}
        for name in without:
            del self.env[name]
        command = command or start_command(image.runtime)
        executable = shutil.which(command[0], path=self.env["PATH"])
        assert executable == str(image.venv / "bin" / command[0]), executable
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [executable, *command[1:]],
            cwd=image.workdir,
            env=self.env,
            stdout=self.log,
            stderr=self.log,
            **_identity(image),  # type: ignore[arg-type]
        )

    def get(self, path: str) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def wait_for(self, path: str, status: int, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            with contextlib.suppress(requests.RequestException):
                if self.get(path).status_code == status:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{path} never answered {status}:\n{self.output()}")

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """The HEALTHCHECK command, run as Docker runs it: inside, with the same env."""
        command = healthcheck_command(self.image.runtime)
        executable = shutil.which(command[0], path=self.env["PATH"])
        assert executable is not None
        return subprocess.run(
            [executable, *command[1:]],
            cwd=self.image.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            **_identity(self.image),  # type: ignore[arg-type]
        )

    def uid(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(row for row in status.splitlines() if row.startswith("Uid:"))
        return int(line.split()[1])

    def stop(self) -> int:
        """`docker stop`: SIGTERM, then the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def test_base_and_service_images_are_pinned_by_digest() -> None:
    stages = parse()
    names = {stage.name for stage in stages}
    bases = [stage.base for stage in stages if stage.base not in names]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = [s["image"] for s in compose["services"].values() if "image" in s]
    for reference in bases + services:
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", reference), reference
    assert bases and services
    assert not DOCKERFILE.read_text().startswith("# syntax="), "an unpinned frontend image"


def test_the_build_context_holds_only_what_the_dockerfile_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "the context must start from nothing"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        source
        for stage in parse()
        for args in stage.all("COPY")
        if not args.startswith("--from=")
        for source in args.split()[:-1]
    }
    assert copied == admitted


def test_the_image_installs_the_locked_app_not_an_editable_copy(image: InstalledImage) -> None:
    python = image.venv / "bin" / "python"
    probe = "import rates_platform, granian, psycopg; print(rates_platform.__file__)"
    result = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, check=True, cwd=image.workdir
    )
    location = Path(result.stdout.strip())
    assert location.is_relative_to(image.venv / "lib"), location  # in site-packages
    assert not list((image.venv / "lib").rglob("__editable__*")), "installed editable"


def _access_job_step(prefix: str) -> list[str]:
    """One step of the access job's command, exactly as the Terraform writes it."""
    joined = str(policy._apps_locals(policy.INFRA)["access_bootstrap"])
    inner = joined.removeprefix('${join(" && ", ["').removesuffix('"])}')
    return shlex.split(next(step for step in inner.split('", "') if step.startswith(prefix)))


def test_the_access_job_applies_the_policy_the_image_holds(
    image: InstalledImage, fresh_db: PreparedDatabase
) -> None:
    """The access job's `dbaccess policy apply --file ...` (from the Terraform), run by
    the installed package as the image's user in its WORKDIR: the file is where the
    command looks, and the repository's policy reaches the database."""
    command = [image.map(word) for word in _access_job_step("dbaccess policy apply")]
    assert (image.workdir / "access-policy.toml").read_bytes() == (
        ROOT / "access-policy.toml"
    ).read_bytes()

    def apply() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(image.venv / "bin" / "dbaccess"), *command[1:]],
            cwd=image.workdir,
            env={**image.env, "DATABASE_URL": fresh_db.migrator},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            **_identity(image),  # type: ignore[arg-type]
        )

    first = apply()
    assert first.returncode == 0, first.stderr
    assert "rates_operator" in first.stdout
    with psycopg.connect(fresh_db.admin) as conn:
        rows = conn.execute("SELECT role_name FROM access.policy ORDER BY 1").fetchall()
    assert rows == [("rates_operator",), ("rates_reader",)]
    again = apply()  # each deploy runs it: unchanged, it changes nothing
    assert (again.returncode, again.stdout.strip()) == (0, "no change"), again.stderr


def test_entrypoint_serves_and_the_healthcheck_passes(
    image: InstalledImage, sample_db: PreparedDatabase
) -> None:
    container = Container(image, DATABASE_URL=sample_db.app)
    try:
        container.wait_for("/readyz", 200)
        if os.geteuid() == 0:
            assert container.uid() == int(image.user.split(":")[0])
        health = container.healthcheck()
        assert health.returncode == 0, health.stderr
        response = container.get(QUERY)
        assert response.status_code == 200, response.text
        assert len(response.json()["rates"]) == 31
    finally:
        code = container.stop()
    assert code == 0, container.output()
    # The health check can fail: nothing answers once the server has stopped.
    assert container.healthcheck().returncode != 0


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsPostgres]:
    with running_tls_postgres() as server:
        server.create_login(TLS_USER, TLS_PASSWORD)
        yield server


def _connect(
    image: InstalledImage, env: dict[str, str], conninfo: str
) -> subprocess.CompletedProcess[str]:
    """One login from the image's psycopg wheel, as its user; the password in PGPASSWORD."""
    code = "import sys, psycopg; psycopg.connect(sys.argv[1]).execute('SELECT 1'); print('ok')"
    return subprocess.run(
        [str(image.venv / "bin" / "python"), "-c", code, conninfo],
        env={**env, "PGPASSWORD": TLS_PASSWORD},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        **_identity(image),  # type: ignore[arg-type]
    )


def test_verify_full_works_with_the_image_environment_only(
    image: InstalledImage, tls_server: TlsPostgres
) -> None:
    # The image trusts the bundle Debian's ca-certificates writes; here that bundle
    # plus the test CA stands in for it (the image's own file is not ours to change).
    assert image.env["SSL_CERT_FILE"] == str(SYSTEM_BUNDLE)
    bundle = bundle_with(tls_server.pki.ca, image.root / "trusting-bundle.pem")
    trusting = {**image.env, "SSL_CERT_FILE": str(bundle)}
    conninfo = tls_server.tls_conninfo(TLS_USER)
    assert "sslmode=verify-full" in conninfo and "sslrootcert=system" in conninfo

    assert _connect(image, trusting, conninfo).stdout.strip() == "ok"

    # The defect the ENV fixes: without SSL_CERT_FILE the wheel's OpenSSL looks for CAs
    # under its own build prefix, which does not exist, and the same login fails.
    without = {k: v for k, v in trusting.items() if k != "SSL_CERT_FILE"}
    failed = _connect(image, without, conninfo)
    assert failed.returncode != 0
    assert "certificate verify failed" in failed.stderr, failed.stderr
    default_file = _wheel_default_ca_file(image)
    assert default_file != str(SYSTEM_BUNDLE) and not Path(default_file).exists(), default_file


def _wheel_default_ca_file(image: InstalledImage) -> str:
    """Where the psycopg wheel's bundled OpenSSL looks for CAs when nothing says otherwise."""
    (libcrypto,) = image.venv.glob("lib/python*/site-packages/psycopg_binary.libs/libcrypto*")
    code = (
        "import ctypes, sys\n"
        "lib = ctypes.CDLL(sys.argv[1])\n"
        "lib.X509_get_default_cert_file.restype = ctypes.c_char_p\n"
        "print(lib.X509_get_default_cert_file().decode())\n"
    )
    result = subprocess.run(
        [str(image.venv / "bin" / "python"), "-c", code, str(libcrypto)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()


def test_rates_serve_reaches_a_tls_database_with_verify_full(
    image: InstalledImage, tls_server: TlsPostgres
) -> None:
    bundle = bundle_with(tls_server.pki.ca, image.root / "serve-bundle.pem")
    url = tls_server.tls_conninfo(TLS_USER, TLS_PASSWORD)
    container = Container(image, DATABASE_URL=url, SSL_CERT_FILE=str(bundle))
    try:
        container.wait_for("/readyz", 200)
    finally:
        assert container.stop() == 0, container.output()
    assert TLS_PASSWORD not in container.output()

    # Without the image's SSL_CERT_FILE (the old image): alive, but never ready.
    broken = Container(image, without=("SSL_CERT_FILE",), DATABASE_URL=url)
    try:
        broken.wait_for("/readyz", 503)
        assert broken.healthcheck().returncode == 0
    finally:
        broken.stop()
    assert "certificate verify failed" in broken.output()


# --- compose.yaml acted out on the installed image ---------------------------------


def _compose_order(services: dict[str, Any]) -> list[str]:
    """Services in `depends_on` order (compose starts them so)."""
    order: list[str] = []
    while len(order) < len(services):
        ready = [
            name
            for name, service in services.items()
            if name not in order and all(d in order for d in service.get("depends_on", {}))
        ]
        assert ready, "compose.yaml has a dependency cycle"
        order += ready
    return order


def _compose_run(image: InstalledImage, service: dict[str, Any], env: dict[str, str]) -> None:
    """A one-shot service: its entrypoint and command, to completion, as the image's user."""
    entrypoint = service.get("entrypoint") or json.loads(image.runtime.last("ENTRYPOINT"))
    argv = [*entrypoint, *service.get("command", [])]
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable is not None and executable.startswith(str(image.venv)), argv
    result = subprocess.run(
        [executable, *argv[1:]],
        cwd=image.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        **_identity(image),  # type: ignore[arg-type]
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"


def test_compose_up_then_rotate_while_serving(image: InstalledImage) -> None:
    """`docker compose up` and `docker compose run --rm rotate`: the db service is a
    PostgreSQL of the test's own (the host `db`), the secret file a file, the named
    `secrets` volume the image's /secrets as a new volume gets it (uid 10001, 0700)."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    database = services["db"]["environment"]
    workdir = Path(tempfile.mkdtemp(prefix="rates-compose-"))
    server = start_server(workdir)
    try:
        password = "compose-db-password"  # noqa: S105 - the throw-away server's
        with psycopg.connect(server.superuser_conninfo(), autocommit=True) as conn:
            user = sql.Identifier(database["POSTGRES_USER"])
            verifier = scram_verifier(conn, database["POSTGRES_USER"], password)
            conn.execute(
                sql.SQL("CREATE ROLE {} SUPERUSER LOGIN PASSWORD {}").format(
                    user, sql.Literal(verifier)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database["POSTGRES_DB"]), user
                )
            )
        secrets = image.root / "run" / "secrets"
        image.paths["/run/secrets"] = secrets
        for name in compose["secrets"]:
            secrets.mkdir(parents=True, exist_ok=True)
            (secrets / name).write_text(password)
            (secrets / name).chmod(0o444)
        for service in services.values():
            for mount in service.get("volumes", []):
                volume, _, target = mount.partition(":")
                if volume in compose["volumes"] and target not in image.paths:
                    # Not in the image: Docker makes the new volume root-owned, 0755.
                    image.paths[target] = image.root / "volumes" / volume
                    image.paths[target].mkdir(parents=True, exist_ok=True)

        def environment(service: dict[str, Any]) -> dict[str, str]:
            """The service's environment, `db` resolved to the test's server."""
            values = {k: str(v) for k, v in (service.get("environment") or {}).items()}
            values = {
                k: image.map(
                    "127.0.0.1"
                    if v == "db"
                    else re.sub(r"\bhost=db\b", f"host=127.0.0.1 port={server.port}", v)
                )
                for k, v in values.items()
            }
            if values.get("PGHOST"):
                values["PGPORT"] = str(server.port)
            return values

        api: Container | None = None
        try:
            for name in _compose_order(services):
                service = services[name]
                if name == "db" or service.get("profiles"):
                    continue  # the test's own server; `docker compose up` leaves tools out
                if service.get("ports"):  # the long-running API
                    api = Container(image, **environment(service))
                    api.wait_for("/readyz", 200)
                else:
                    _compose_run(image, service, {**image.env, **environment(service)})
            assert api is not None, "compose.yaml serves nothing"
            assert api.get(QUERY).status_code == 200
            with psycopg.connect(server.superuser_conninfo("rates")) as conn:
                users = {r[0] for r in conn.execute("SELECT usename FROM pg_stat_activity")}
            assert users & {"rates_app_a", "rates_app_b"}, users  # a rotated slot
            assert "rates" not in users - {None}, "the API logs in as the administrator"

            rotate = services["rotate"]
            _compose_run(image, rotate, {**image.env, **environment(rotate)})
            for _ in range(20):
                assert api.get(QUERY).status_code == 200
        finally:
            if api is not None:
                assert api.stop() == 0, api.output()
        store = image.paths["/secrets"]
        assert store.stat().st_mode & 0o777 == 0o700
        assert sorted(p.name for p in store.iterdir())  # the store was written there
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
