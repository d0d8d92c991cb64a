"""What `dbaccess access list|activity` prints: a requester's text cannot drive the
approver's terminal or forge lines of its own."""

from __future__ import annotations

import pytest

from rates_platform.access import cli


def test_a_reason_cannot_forge_lines_or_send_terminal_escapes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reason = "ok\x1b[2J\x1b]0;title\x07\nid=9  status=granted  requester=eve\r\x9b31m"
    cli._print_rows([{"id": 1, "reason": reason}], False, ("id", "reason"))
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one row, one line
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in out.rstrip("\n"))
    assert "id=9  status=granted  requester=eve" in out  # still readable, escaped
    assert "\\x1b[2J" in out and "\\n" in out


def test_printable_text_is_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    cli._print_rows(
        [{"id": 2, "reason": "fix a mistyped price: Zürich → 東京"}], False, ("id", "reason")
    )
    assert capsys.readouterr().out == "id=2  reason=fix a mistyped price: Zürich → 東京\n"
