"""Disaster-recovery drill: restore to a point in time and prove the service is whole.

``python -m rates_platform.drdrill`` (``make dr-drill``) runs it locally on embedded
PostgreSQL: a source server archiving its WAL, a base backup, a data load and its audit
event before a target time and another after it, then the backup restored into a new
data directory with ``recovery_target_time``. The restored server must answer ``/rates``
exactly as the source did at the target time (through the real app), its audit chain
must verify against the source's head at that time, and nothing written after the
target may be there. ``compare`` runs the same checks between a live server and a
restored copy of it (the scheduled Azure drill, scripts/dr_drill_azure.sh).

Exit codes: 0 the restore is whole, 1 a check failed, 3 inconclusive (data was loaded
on the source after the target time, so its answers are no reference).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from rates_platform import schema
from rates_platform.app import create_app
from rates_platform.dbaccess import audit
from rates_platform.dbaccess.audit import Event
from rates_platform.dbaccess.chain import Anchor
from rates_platform.dbaccess.roles import ensure_login_member
from rates_platform.dbaccess.secrets import new_password
from rates_platform.devdb import SYSTEM_USER, EmbeddedPostgres
from rates_platform.settings import Settings

SAMPLE = Path("db/rates.sql")
DATABASE = "rates"
# One query per shape over the lane the drill changes, and one it never touches.
QUERIES = (
    "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=EETLL",
    "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=northern_europe",
    "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=china_main&dest_code=EETLL",
    "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=china_main&dest_code=northern_europe",
    "/rates?date_from=2016-01-01&date_to=2016-01-31&orig_code=CNSGH&dest_code=NLRTM",
)
PASSED, FAILED, INCONCLUSIVE = 0, 1, 3
# The checks read, never write: the rates tables and the audit tables, which is what
# rates_dr_drill (migration 0011) may do. The Azure drill's identity is made its member
# (`dbaccess audit grant-drill`); locally the restored copy is checked as this login.
DRILL_LOGIN = "rates_drill"
DRILL_ROLE = audit.DRILL_GROUP
OK = 200


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: int = 0

    def check(self, ok: bool, what: str) -> None:
        self.failures += not ok
        self.lines.append(f"{'ok  ' if ok else 'FAIL'} {what}")

    def note(self, what: str) -> None:
        self.lines.append(f"     {what}")


def answers(conninfo: str, queries: Sequence[str] = QUERIES) -> dict[str, Any]:
    """What the real app answers for each query against ``conninfo`` (status and body).
    Only a 200 is an answer: see ``same_answer``."""
    app = create_app(Settings(database_url=conninfo, pool_min_size=1, pool_max_size=1))
    try:
        client = app.test_client()
        result: dict[str, Any] = {}
        for query in queries:
            response = client.get(query)
            result[query] = (response.status_code, response.get_json())
        return result
    finally:
        app.extensions["database"].pool.close()


def same_answer(got: Any, expected: Any) -> bool:
    """Equal, and both 200: two servers failing alike (say, a login that may not read
    the rates) prove nothing about the restore."""
    return bool(got == expected and expected[0] == OK)


def check_restored(
    report: Report, restored: str, expected: Mapping[str, Any], anchor: Anchor
) -> None:
    """The restored database answers as expected and holds the audit chain up to
    ``anchor`` (the source's head at the target time), intact, and nothing after it."""
    got = answers(restored, list(expected))
    for query, answer in expected.items():
        report.check(
            same_answer(got[query], answer),
            f"/rates answers as at the target time (status {got[query][0]}): {query}",
        )
    with psycopg.connect(restored) as conn:
        verification = audit.verify(conn, [anchor])
        head = audit.head(conn)
    report.check(
        verification.first_broken_id is None,
        f"audit chain verifies against {anchor.describe()}: {verification.reason or 'intact'}",
    )
    report.check(
        head.id == anchor.id, f"no audit event after the target (head {head.id}, {anchor.id})"
    )


# -- the local drill -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _give_to_server(path: Path) -> None:
    """As root the server runs as devdb's system user: it must own what it writes."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SYSTEM_USER)
    for item in (path, *path.rglob("*")):
        os.chown(item, entry.pw_uid, entry.pw_gid)


def _configure(datadir: Path, settings: Mapping[str, str]) -> None:
    """Settings in postgresql.auto.conf, as ALTER SYSTEM writes them."""
    escaped = (
        f"{key} = '{value.replace(chr(39), chr(39) * 2)}'" for key, value in settings.items()
    )
    with (datadir / "postgresql.auto.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n".join(escaped) + "\n")


def _load_more(conninfo: str, day: str, price: int, source: str) -> None:
    """Three prices on the drill's lane and the audit event of that load, in one
    transaction: the change the restore must keep or lose as a whole."""
    with psycopg.connect(conninfo) as conn, conn.transaction():
        for _ in range(3):
            conn.execute(
                "INSERT INTO prices (orig_code, dest_code, day, price) VALUES (%s, %s, %s, %s)",
                ("CNGGZ", "EETLL", day, price),
            )
        schema.rebuild_daily_totals(conn)
        audit.record(conn, Event.DATA_LOAD, "rates", details={"source": source, "rows": 3})


def _wait_archived(conninfo: str) -> None:
    """Close the current WAL segment and wait until the archiver has copied it."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        segment = row[0] if row else ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = conn.execute(
                "SELECT last_archived_wal >= %s FROM pg_stat_archiver", (segment,)
            ).fetchone()
            if done and done[0]:
                return
            time.sleep(0.1)
    raise RuntimeError(f"WAL segment {segment} was not archived within 60 s")


def _wait_promoted(conninfo: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(conninfo, connect_timeout=2) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row == (False,):
                    return
        except psycopg.OperationalError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the restored server did not finish recovery within 60 s")


@contextmanager
def _running(server: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    try:
        yield server
    finally:
        if server.running:
            server.stop()


@dataclass(frozen=True)
class Backup:
    """What the source left behind, and what it answered at the target time."""

    base: Path  # the base backup
    archive: Path  # every WAL segment since
    target: datetime
    anchor: Anchor  # the audit chain's head at the target time
    expected: dict[str, Any]  # /rates answers at the target time
    password: str = field(repr=False)  # the drill login's, in memory only


def prepare(workdir: Path, report: Report, sample: Path = SAMPLE) -> Backup:
    """Run a source that archives its WAL: base backup, a load, the target time, another
    load; stopped afterwards, as a lost server would be."""
    archive, backups = workdir / "wal-archive", workdir / "backups"
    for directory in (archive, backups):
        directory.mkdir(parents=True)
        _give_to_server(directory)
    source = EmbeddedPostgres(workdir / "source", _free_port())
    source.init()
    with (source.datadir / "pg_hba.conf").open("a", encoding="utf-8") as hba:
        hba.write("local replication postgres trust\n")  # pg_basebackup, socket only
    _configure(
        source.datadir,
        {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": f"cp %p {archive}/%f",
            "fsync": "off",  # a throw-away server: recovery needs WAL, not durability
        },
    )
    with _running(source):
        source.start()
        with psycopg.connect(source.superuser_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        live = source.superuser_conninfo(DATABASE)
        schema.migrate(live)
        schema.load_sample(live, sample)
        password = new_password()
        with psycopg.connect(live, autocommit=True) as conn:
            ensure_login_member(conn, DRILL_LOGIN, password, group=DRILL_ROLE)
        at_backup = answers(live)
        base = backups / "base"
        backup = ["-D", str(base), "-h", str(source.datadir), "-p", str(source.port)]
        # The server's own pg_basebackup, run as its system user (devdb's runner).
        options = ["-U", "postgres", "-X", "stream", "-c", "fast", "--no-sync"]
        source._pg("pg_basebackup", *backup, *options)
        report.note(f"base backup taken: {base}")

        _load_more(live, "2021-01-10", 4321, "dr-drill: before the target")
        expected = answers(live)
        with psycopg.connect(live) as conn:
            anchor = audit.head(conn)
            row = conn.execute("SELECT clock_timestamp()").fetchone()
        target: datetime = row[0] if row else datetime.now().astimezone()
        time.sleep(0.5)  # the next commit is clearly after the target
        _load_more(live, "2021-01-20", 8765, "dr-drill: after the target")
        after = answers(live)
        _wait_archived(live)
        report.note(f"target time {target.isoformat()}; audit head then {anchor.id}")
        # The drill proves something only if both loads change what the API answers.
        report.check(expected != at_backup, "the load before the target changed /rates")
        report.check(after != expected, "the load after the target changed /rates")
        report.check(
            all(status == OK for status, _ in expected.values()), "every query answered 200"
        )
    return Backup(base, archive, target, anchor, expected, password)


@contextmanager
def restore(workdir: Path, backup: Backup, target: datetime | None) -> Iterator[str]:
    """The base backup copied into a new data directory and recovered from the archive
    up to ``target`` (None: all of it); yields the drill login's conninfo to it."""
    restored = EmbeddedPostgres(workdir / f"restored-{_free_port()}", _free_port())
    shutil.copytree(backup.base, restored.datadir)
    _give_to_server(restored.datadir)
    (restored.datadir / "recovery.signal").touch()
    # The copy inherits the source's archiving settings: off, or its new timeline would
    # land in the source's archive and steer every later restore onto it.
    recovery = {"restore_command": f"cp {backup.archive}/%f %p", "archive_mode": "off"}
    if target is not None:
        recovery |= {
            "recovery_target_time": target.isoformat(),
            "recovery_target_action": "promote",
        }
    _configure(restored.datadir, recovery)
    with _running(restored):
        restored.start()
        _wait_promoted(restored.superuser_conninfo(DATABASE))
        yield restored.tcp_conninfo(DRILL_LOGIN, backup.password, DATABASE)


def local_drill(workdir: Path, sample: Path = SAMPLE) -> Report:
    report = Report()
    backup = prepare(workdir, report, sample)
    with restore(workdir, backup, backup.target) as copy:
        report.note("restored into a new data directory")
        check_restored(report, copy, backup.expected, backup.anchor)
    return report


# -- the Azure drill's comparison ------------------------------------------------------


def compare(source: str, restored: str, target: datetime) -> tuple[Report, int]:
    """A live server against its point-in-time restore at ``target``."""
    report = Report()
    with psycopg.connect(source) as conn:
        loads = conn.execute(
            "SELECT count(*) FROM audit.events WHERE event_type = %s AND at > %s",
            (Event.DATA_LOAD.value, target),
        ).fetchone()
    with psycopg.connect(restored) as conn:
        head = audit.head(conn)
        last = conn.execute("SELECT max(at) FROM audit.events").fetchone()
    with psycopg.connect(source) as conn:
        row = conn.execute(
            "SELECT hash, (SELECT count(*) FROM audit.events WHERE id <= %s) "
            "FROM audit.events WHERE id = %s",
            (head.id, head.id),
        ).fetchone()
    if row is None:
        report.check(False, f"the restored audit head {head.id} exists on the source")
        return report, FAILED
    anchor = Anchor(id=head.id, hash=row[0], rows=row[1], at=target.isoformat())
    report.check(
        last is not None and (last[0] is None or last[0] <= target),
        "no audit event after the target time",
    )
    if loads and loads[0]:
        with psycopg.connect(restored) as conn:
            verification = audit.verify(conn, [anchor])
        report.check(verification.first_broken_id is None, "restored audit chain verifies")
        report.note(f"{loads[0]} data load(s) after the target: answers not compared")
        return report, FAILED if report.failures else INCONCLUSIVE
    check_restored(report, restored, answers(source), anchor)
    return report, FAILED if report.failures else PASSED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rates_platform.drdrill")
    commands = parser.add_subparsers(dest="command")
    local = commands.add_parser("local", help="the drill on embedded PostgreSQL (default)")
    local.add_argument("--workdir", type=Path, help="kept afterwards (default: a temp dir)")
    local.add_argument("--sample", type=Path, default=SAMPLE)
    remote = commands.add_parser("compare", help="a live server against its restore")
    remote.add_argument("--source", required=True, help="conninfo of the live database")
    remote.add_argument("--restored", required=True, help="conninfo of the restored copy")
    remote.add_argument("--target-time", required=True, type=datetime.fromisoformat)
    args = parser.parse_args(argv)
    if args.command == "compare":
        if args.target_time.tzinfo is None:
            parser.error("--target-time needs a UTC offset")
        report, code = compare(args.source, args.restored, args.target_time)
    else:
        workdir = getattr(args, "workdir", None)
        sample = getattr(args, "sample", SAMPLE)
        temporary = workdir is None
        workdir = workdir or Path(tempfile.mkdtemp(prefix="rates-dr-drill-"))
        try:
            report = local_drill(workdir, sample)
        finally:
            if temporary:
                shutil.rmtree(workdir, ignore_errors=True)
        code = FAILED if report.failures else PASSED
    print("\n".join(report.lines))
    verdict = {PASSED: "restore is whole", FAILED: "RESTORE FAILED", INCONCLUSIVE: "inconclusive"}
    print(f"dr-drill: {verdict[code]} ({report.failures} failed check(s))")
    return code


if __name__ == "__main__":
    sys.exit(main())
