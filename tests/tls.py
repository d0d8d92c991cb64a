"""Test TLS: a throw-away CA, a server certificate it signs, and a PostgreSQL that needs TLS.

The embedded PostgreSQL wheels are built without OpenSSL; Debian's postgresql-15 has it
(scripts/system-packages.txt). The server runs as devdb's system user, like the embedded
one, and accepts TCP logins over TLS only (``hostssl``), as Azure's does.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from psycopg import sql

from rates_platform.dbaccess.roles import scram_verifier
from rates_platform.devdb import EmbeddedPostgres
from tests.support import free_port

DEBIAN_PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Where Debian's ca-certificates writes the system bundle (what the image trusts).
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1",)


@dataclass(frozen=True)
class TestPki:
    ca: Path  # the CA certificate a client must trust
    cert: Path  # the server's certificate, signed by the CA
    key: Path  # the server's private key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(
    directory: Path, names: tuple[str, ...] = SERVER_NAMES, ips: tuple[str, ...] = SERVER_IPS
) -> TestPki:
    """A CA and a server certificate for ``names`` and ``ips`` (valid for an hour)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rates-platform test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (names or ips)[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = TestPki(directory / "ca.pem", directory / "server.crt", directory / "server.key")
    pki.ca.write_bytes(_pem(ca))
    pki.cert.write_bytes(_pem(cert))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pki.key.chmod(0o600)
    return pki


def bundle_with(ca: Path, path: Path, base: Path = SYSTEM_BUNDLE) -> Path:
    """The system CA bundle plus ``ca``: the image's bundle once the CA is trusted."""
    existing = base.read_bytes() if base.exists() else b""
    path.write_bytes(existing + b"\n" + ca.read_bytes())
    return path


class TlsPostgres(EmbeddedPostgres):
    """Debian's PostgreSQL 15 with ``ssl=on``; TCP logins over TLS only."""

    def __init__(self, datadir: Path, port: int, pki: TestPki) -> None:
        if not (DEBIAN_PG_BIN / "postgres").exists():
            raise RuntimeError(
                f"{DEBIAN_PG_BIN} is missing: install postgresql-15 (make system-packages)"
            )
        super().__init__(datadir, port, install_dir=DEBIAN_PG_BIN.parent)
        self.pki = pki

    def init(self) -> None:
        super().init()
        hba = self.datadir / "pg_hba.conf"
        hba.write_text(hba.read_text().replace("\nhost ", "\nhostssl "), encoding="utf-8")
        for source, name in ((self.pki.cert, "server.crt"), (self.pki.key, "server.key")):
            target = self.datadir / name
            shutil.copyfile(source, target)
            target.chmod(0o600)  # the server refuses a key others can read
            if self._user is not None:
                entry = pwd.getpwnam(self._user)
                os.chown(target, entry.pw_uid, entry.pw_gid)

    def start(self, settings: Mapping[str, str] | None = None) -> None:
        tls = {"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"}
        super().start({**tls, **(settings or {})})

    def tls_conninfo(self, user: str, password: str | None = None, dbname: str = "postgres") -> str:
        """verify-full against the system trust store, as the deployed API connects."""
        return psycopg.conninfo.make_conninfo(
            host=SERVER_NAMES[0],
            port=self.port,
            user=user,
            password=password,
            dbname=dbname,
            sslmode="verify-full",
            sslrootcert="system",
        )

    def create_login(self, user: str, password: str) -> None:
        """A plain LOGIN role (PostgreSQL 15 lacks the role model's INHERIT FALSE grants)."""
        with psycopg.connect(self.superuser_conninfo(), autocommit=True) as conn:
            verifier = scram_verifier(conn, user, password)  # never the password itself
            statement = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(verifier)
            )
            conn.execute(statement)


@contextmanager
def running_tls_postgres(directory: Path | None = None) -> Iterator[TlsPostgres]:
    """A started TLS server with its own PKI under ``directory``; stopped on exit.

    By default a temporary directory outside pytest's: a concurrent pytest run resets
    pytest's root to 0700, which would lock the server's system user out of its data.
    """
    own = directory is None
    base = Path(tempfile.mkdtemp(prefix="rates-tls-")) if directory is None else directory
    pki = make_pki(base / "pki")
    server = TlsPostgres(base / "data", free_port(), pki)
    try:
        server.start({"fsync": "off"})
        yield server
    finally:
        if server.running:
            server.stop()
        if own:
            shutil.rmtree(base, ignore_errors=True)
