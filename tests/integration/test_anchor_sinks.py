"""The anchor sinks' contract, for the local file and for an Azure append blob (through
the official SDK against a local HTTPS stand-in of the Blob REST calls it makes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rates_platform.dbaccess import audit
from rates_platform.dbaccess.anchors import AnchorError, AnchorSink, encode, line_hash, open_sink
from rates_platform.dbaccess.audit import Event
from rates_platform.dbaccess.chain import Anchor
from tests.blob_standin import BlobStandIn, running_standin
from tests.keyvault_standin import StandInCredential
from tests.support import PreparedDatabase

BLOB = "/rates/audit-anchors/prod.jsonl"  # account, container, blob


@pytest.fixture
def blob(tmp_path: Path) -> Iterator[tuple[AnchorSink, BlobStandIn]]:
    with running_standin(tmp_path) as (standin, url, ca):
        sink = open_sink(
            f"blob:{url}{BLOB}", credential=StandInCredential(), connection_verify=str(ca)
        )
        yield sink, standin


@pytest.fixture(params=["file", "blob"])
def sink(
    request: pytest.FixtureRequest, tmp_path: Path, blob: tuple[AnchorSink, BlobStandIn]
) -> AnchorSink:
    return open_sink(f"file:{tmp_path / 'anchors.jsonl'}") if request.param == "file" else blob[0]


def anchor(number: int) -> Anchor:
    return Anchor(number, f"{number:064x}", number, f"2026-11-28T00:00:{number:02d}Z")


def test_a_sink_keeps_every_anchor_in_order(sink: AnchorSink) -> None:
    assert sink.read(missing_ok=True) == []
    with pytest.raises(AnchorError, match="no anchor"):
        sink.read()  # for verify, a sink with no anchor may be one that was removed
    for number in (1, 2, 3):
        sink.append(anchor(number))
    assert sink.read() == [anchor(1), anchor(2), anchor(3)]


def test_the_blob_sink_appends_blocks_at_the_length_it_read(
    blob: tuple[AnchorSink, BlobStandIn],
) -> None:
    sink, standin = blob
    sink.append(anchor(1))
    sink.append(anchor(2))
    writes = [r for r in standin.requests if r.startswith("PUT")]
    assert writes == [f"PUT {BLOB}", f"PUT {BLOB}?comp=appendblock", f"PUT {BLOB}?comp=appendblock"]
    assert bytes(standin.blobs[BLOB]).count(b"\n") == 2


def test_two_anchors_racing_cannot_both_chain_to_the_same_line(
    blob: tuple[AnchorSink, BlobStandIn],
) -> None:
    sink, standin = blob
    sink.append(anchor(1))
    first = bytes(standin.blobs[BLOB]).decode().rstrip("\n")
    racer = (encode(anchor(2), line_hash(first)) + "\n").encode()

    def another_writer_appends(name: str) -> None:
        standin.after_download = None
        standin.blobs[name].extend(racer)

    standin.after_download = another_writer_appends  # between our read and our append
    with pytest.raises(AnchorError, match="cannot append"):
        sink.append(anchor(3))
    assert sink.read() == [anchor(1), anchor(2)]  # nothing half-written


def test_a_rewritten_blob_is_reported(blob: tuple[AnchorSink, BlobStandIn]) -> None:
    sink, standin = blob
    for number in (1, 2, 3):
        sink.append(anchor(number))
    lines = bytes(standin.blobs[BLOB]).splitlines(keepends=True)
    standin.blobs[BLOB] = bytearray(lines[0] + lines[2])  # what the retention policy forbids
    with pytest.raises(AnchorError, match="line 2 does not follow line 1"):
        sink.read()


def test_verify_against_blob_anchors_reports_a_removed_tail(
    fresh_db: PreparedDatabase, blob: tuple[AnchorSink, BlobStandIn]
) -> None:
    sink, _ = blob
    with psycopg.connect(fresh_db.app) as conn:
        for target in ("one", "two"):
            audit.record(conn, Event.API_START, target)
    with psycopg.connect(fresh_db.admin, autocommit=True) as conn:
        sink.append(audit.head(conn))
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM audit.events WHERE target = 'two'")
        conn.execute(
            "UPDATE audit.chain_head SET (last_id, last_hash) ="
            " (SELECT id, hash FROM audit.events ORDER BY id DESC LIMIT 1)"
        )
        assert audit.verify(conn).intact
        result = audit.verify(conn, sink.read())
    assert not result.intact and "the tail was removed or the head reset" in (result.reason or "")
