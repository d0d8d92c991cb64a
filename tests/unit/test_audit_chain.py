"""The audit chain's pure rules: hash formats, and verification against anchors."""

from __future__ import annotations

import dataclasses
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rates_platform.dbaccess import chain
from rates_platform.dbaccess.anchors import AnchorError, FileSink, open_sink
from rates_platform.dbaccess.chain import GENESIS, Anchor, Row

AT = datetime(2026, 11, 28, 1, 2, 3, 456789, tzinfo=UTC)
V2_ONLY = [(1, 1), (2, 1)]


def event(event_id: int, actor: str, event_type: str, target: str, details: str = "{}") -> Row:
    return Row(event_id, AT, actor, event_type, target, "success", details, GENESIS, "")


def build(count: int, formats: list[tuple[int, int]] = V2_ONLY) -> list[Row]:
    rows, prev = [], GENESIS
    for event_id in range(1, count + 1):
        row = dataclasses.replace(
            event(event_id, "rates_app_a", "api.start", f"t{event_id}"), prev_hash=prev
        )
        version = chain.format_of(event_id, formats)
        assert version is not None
        row = dataclasses.replace(row, hash=chain.HASHES[version](prev, row))
        rows.append(row)
        prev = row.hash
    return rows


def anchor_at(rows: list[Row], event_id: int) -> Anchor:
    row = next(r for r in rows if r.id == event_id)
    return Anchor(event_id, row.hash, sum(r.id <= event_id for r in rows), "2026-11-28T00:00Z")


def test_rows_that_collide_under_the_pipe_format_do_not_under_netstrings() -> None:
    # A role named with pipes shifts every later field by one: same '|' text.
    one = event(7, "u", "api.start", "t|api.stop|x")
    two = dataclasses.replace(one, actor="u|api.start|t", event_type="api.stop", target="x")
    assert "|".join(one.fields()) == "|".join(two.fields())
    assert chain.hash_v1(GENESIS, one) == chain.hash_v1(GENESIS, two)
    assert chain.hash_v2(GENESIS, one) != chain.hash_v2(GENESIS, two)


def test_the_time_is_hashed_in_utc_with_microseconds_whatever_the_offset() -> None:
    row = event(1, "a", "api.start", "t")
    kiritimati = dataclasses.replace(row, at=AT.astimezone(timezone(timedelta(hours=14))))
    assert row.fields()[1] == "2026-11-28T01:02:03.456789Z"
    assert chain.hash_v2(GENESIS, row) == chain.hash_v2(GENESIS, kiritimati)


def test_netstrings_count_bytes_not_characters() -> None:
    assert chain.netstring("é,") == b"3:\xc3\xa9,,"


def test_an_old_format_prefix_and_a_new_format_suffix_verify() -> None:
    formats = [(1, 1), (2, 4)]
    rows = build(6, formats)
    result = chain.verify(rows, (6, rows[-1].hash), formats)
    assert (result.intact, result.rows) == (True, 6)
    assert not chain.verify(rows, (6, rows[-1].hash), V2_ONLY).intact  # formats matter


def test_anchors_hold_on_an_untouched_chain() -> None:
    rows = build(5)
    anchors = [anchor_at(rows, 2), anchor_at(rows, 5)]
    result = chain.verify(rows, (5, rows[-1].hash), V2_ONLY, anchors)
    assert (result.intact, result.anchors) == (True, 2)


def test_a_chain_rebuilt_from_a_rewritten_row_fails_at_the_first_anchor_after_it() -> None:
    rows = build(5)
    anchors = [anchor_at(rows, 1), anchor_at(rows, 3), anchor_at(rows, 5)]
    forged = build(5)
    forged[1] = dataclasses.replace(forged[1], target="forged")
    prev = forged[0].hash
    for index in range(1, 5):  # recompute every later hash, as a superuser could
        forged[index] = dataclasses.replace(forged[index], prev_hash=prev)
        forged[index] = dataclasses.replace(forged[index], hash=chain.hash_v2(prev, forged[index]))
        prev = forged[index].hash
    assert chain.verify(forged, (5, prev), V2_ONLY).intact
    result = chain.verify(forged, (5, prev), V2_ONLY, anchors)
    assert result.first_broken_id == 3 and "rewritten and rehashed" in (result.reason or "")


def test_a_missing_anchored_row_and_a_short_chain_are_named() -> None:
    rows = build(4)
    anchors = [anchor_at(rows, 2), anchor_at(rows, 4)]
    without_two = [rows[0], *rows[2:]]
    gone = chain.verify(without_two, (4, rows[-1].hash), V2_ONLY, anchors)
    assert gone.first_broken_id == 2 and "gone" in (gone.reason or "")
    short = chain.verify(rows[:3], (3, rows[2].hash), V2_ONLY, anchors)
    assert short.first_broken_id == 3 and "head reset" in (short.reason or "")


def test_a_genesis_anchor_must_name_no_event() -> None:
    assert chain.verify([], (0, GENESIS), V2_ONLY, [Anchor(0, GENESIS, 0, "t")]).intact
    forged = chain.verify([], (0, GENESIS), V2_ONLY, [Anchor(0, "ab" * 32, 0, "t")])
    assert not forged.intact


def test_the_file_sink_appends_private_chained_lines(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "anchors.jsonl")
    first, second = Anchor(1, "a" * 64, 1, "t1"), Anchor(2, "b" * 64, 2, "t2")
    sink.append(first)
    sink.append(second)
    assert sink.read() == [first, second]
    assert stat.S_IMODE(os.stat(sink.path).st_mode) == 0o600
    lines = sink.path.read_text().splitlines()
    sink.path.write_text(lines[1] + "\n")  # the first line removed
    with pytest.raises(AnchorError, match="line 1 does not follow the start"):
        sink.read()


def test_the_file_sink_refuses_garbage_and_a_torn_last_line(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "anchors.jsonl")
    sink.path.write_text("not json\n")
    with pytest.raises(AnchorError, match="line 1 is not an anchor"):
        sink.read()
    sink.path.write_text('{"id": 1')
    with pytest.raises(AnchorError, match="incomplete"):
        sink.append(Anchor(1, "a" * 64, 1, "t"))


def test_sink_specs() -> None:
    assert isinstance(open_sink("file:/tmp/x"), FileSink)
    for spec in ("file:", "blob:http://plain/text", "anchors.jsonl"):
        with pytest.raises(ValueError, match="expected file:PATH"):
            open_sink(spec)


def rehashed(rows: list[Row], start: int) -> list[Row]:
    """What a superuser does after an edit: recompute every hash from index ``start``."""
    rows = list(rows)
    prev = rows[start - 1].hash if start > 0 else GENESIS
    for index in range(start, len(rows)):
        row = dataclasses.replace(rows[index], prev_hash=prev)
        rows[index] = dataclasses.replace(row, hash=chain.hash_v2(prev, row))
        prev = rows[index].hash
    return rows


@settings(max_examples=300, deadline=None)
@given(
    count=st.integers(1, 25),
    data=st.data(),
    how=st.sampled_from(["edit", "delete", "truncate"]),
)
def test_any_rewrite_up_to_the_newest_anchor_is_reported_and_only_that(
    count: int, data: st.DataObject, how: str
) -> None:
    rows = build(count)
    anchored = data.draw(st.sets(st.integers(1, count), min_size=1), label="anchored ids")
    anchors = [anchor_at(rows, event_id) for event_id in sorted(anchored)]
    at = data.draw(st.integers(0, count - 1), label="first changed index")
    if how == "edit":
        rows[at] = dataclasses.replace(rows[at], target="forged")
        tampered = rehashed(rows, at)
    elif how == "delete":
        tampered = rehashed(rows[:at] + rows[at + 1 :], at)
    else:
        tampered = rows[:at]
    head = (tampered[-1].id, tampered[-1].hash) if tampered else (0, GENESIS)
    assert chain.verify(tampered, head, V2_ONLY).intact  # self-consistent: no chain can tell
    result = chain.verify(tampered, head, V2_ONLY, anchors)
    changed_id = rows[at].id
    assert result.intact == (changed_id > max(anchored)), (how, changed_id, anchored, result)
    if not result.intact:
        assert result.first_broken_id is not None
        assert result.first_broken_id <= max(anchored)
