"""A whole rotation over `sslmode=verify-full` against an endpoint with a test CA.

The rotation's test step used to rebuild its connection string from host, port, dbname
and sslmode, dropping `sslrootcert` (Azure's `sslrootcert=system`): libpq then refuses to
connect and every rotation fails at `test`. The role model needs PostgreSQL 16+, and
the PostgreSQL builds with TLS at hand (Debian's 15) are older while the 16 and 18
wheels have no OpenSSL: so TLS is terminated in front of the wheel's server by a small
relay that speaks PostgreSQL's SSLRequest handshake and refuses plaintext, as Azure's
endpoint does. libpq's side (certificate chain and host name checks) is the real one.
The second test checks the same login derivation against Debian's TLS server itself.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rates_platform.dbaccess.bootstrap import bootstrap
from rates_platform.dbaccess.rotation import RotationPolicy, login_conninfo
from rates_platform.dbaccess.secrets import CURRENT, LocalFileStore, new_password, with_stage
from rates_platform.devdb import EmbeddedPostgres
from tests import tls
from tests.support import (
    ADMIN_PASSWORD,
    ADMIN_ROLE,
    PreparedDatabase,
    prepare_database,
    start_server,
)

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


class TlsEndpoint:
    """Accepts TLS-only PostgreSQL connections and relays them to ``backend_port``."""

    def __init__(self, backend_port: int, pki: tls.TestPki) -> None:
        self.backend_port = backend_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.cert, pki.key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError, ConnectionError, ssl.SSLError):
            while True:
                _length, code = struct.unpack("!II", _read_exactly(client, 8))
                if code == GSSENC_REQUEST:
                    client.sendall(b"N")
                    continue
                if code != SSL_REQUEST:
                    client.close()  # plaintext startup: refused
                    return
                client.sendall(b"S")
                break
            tls = self.context.wrap_socket(client, server_side=True)
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
            with tls, backend:
                while True:
                    ready = [tls] if tls.pending() else select.select([tls, backend], [], [])[0]
                    for source in ready:
                        data = source.recv(65536)
                        if not data:
                            return
                        (backend if source is tls else tls).sendall(data)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PreparedDatabase]:
    """A server of its own: login roles are cluster-wide."""
    server: EmbeddedPostgres = start_server(tmp_path_factory.mktemp("tls"))
    yield prepare_database(server, "rates")
    server.stop()


@pytest.fixture
def endpoint(db: PreparedDatabase, tmp_path: Path) -> Iterator[tuple[TlsEndpoint, tls.TestPki]]:
    pki = tls.make_pki(tmp_path / "pki")
    relay = TlsEndpoint(db.server.port, pki)
    yield relay, pki
    relay.close()


def test_a_whole_rotation_passes_over_verify_full(
    db: PreparedDatabase, endpoint: tuple[TlsEndpoint, tls.TestPki], tmp_path: Path
) -> None:
    relay, pki = endpoint
    server = make_conninfo(
        host="localhost",
        port=relay.port,
        dbname=db.name,
        sslmode="verify-full",
        sslrootcert=str(pki.ca),
    )
    with pytest.raises(psycopg.OperationalError):  # the endpoint refuses plaintext
        psycopg.connect(make_conninfo(server, sslmode="disable"), connect_timeout=5)
    admin = make_conninfo(server, user=ADMIN_ROLE, password=ADMIN_PASSWORD)
    store = LocalFileStore(tmp_path / "secrets.enc")
    rotator = bootstrap(admin, store, server, RotationPolicy())  # create/set/test/finish
    assert rotator.run(force=True) == "rotated"  # and a second whole rotation
    current = with_stage(store, "rates-db-app", CURRENT)
    assert current is not None

    tested = login_conninfo(rotator.conninfo, current.login())
    assert conninfo_to_dict(tested)["sslrootcert"] == str(pki.ca)
    with psycopg.connect(tested) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT count(*) FROM prices").fetchone() == (56689,)
    with psycopg.connect(db.admin) as conn:
        events = {
            event
            for (event,) in conn.execute(
                "SELECT event_type FROM audit.events WHERE details->>'version' = %s",
                (current.version_id,),
            )
        }
    assert events == {"rotation.create", "rotation.set", "rotation.test", "rotation.finish"}

    # What the test step used to build: the same server, sslmode kept, sslrootcert lost.
    with psycopg.connect(rotator.conninfo) as conn:
        rebuilt = make_conninfo(
            host=conn.info.host,
            port=conn.info.port,
            dbname=conn.info.dbname,
            sslmode=conn.info.get_parameters().get("sslmode", "verify-full"),
            **current.login(),
        )
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(rebuilt, connect_timeout=5)


def test_the_test_steps_login_keeps_tls_on_a_real_tls_server() -> None:
    """Debian's PostgreSQL 15 (TLS built in, hostssl only; too old for the role model):
    the login the test step derives from the rotator's connection verifies the server."""
    with tls.running_tls_postgres() as server:
        rotator_login, app_login = new_password(), new_password()
        server.create_login("probe_rotator", rotator_login)
        server.create_login("probe_app", app_login)
        rotator = make_conninfo(
            host="localhost",
            port=server.port,
            dbname="postgres",
            sslmode="verify-full",
            sslrootcert=str(server.pki.ca),
            user="probe_rotator",
            password=rotator_login,
        )
        derived = login_conninfo(rotator, {"user": "probe_app", "password": app_login})
        with psycopg.connect(derived, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT ssl, current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
        assert row == (True, "probe_app")
        rebuilt = make_conninfo(
            host="localhost",
            port=server.port,
            dbname="postgres",
            sslmode="verify-full",
            user="probe_app",
            password=app_login,
        )
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(rebuilt, connect_timeout=5)
