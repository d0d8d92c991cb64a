"""The edge reads a query string exactly as Flask's request.args does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from rates_platform.http.edge import query_parameters

# Query strings as a WSGI server hands them over: bytes decoded as latin-1, with the
# characters that matter to parsing (separators, escapes, plus) over-represented.
_PIECES = st.sampled_from(["&", "=", "%", "%FF", "%2", "%41", "+", ";", "a", "date_from", "é"])
_QUERY = st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=12).map("".join)


@given(_QUERY)
def test_query_parameters_are_flask_s_args(query: str) -> None:
    environ = EnvironBuilder(path="/rates").get_environ()
    environ["QUERY_STRING"] = query.encode("utf-8").decode("latin1")
    expected = Request(environ).args
    assert list(query_parameters(environ).items(multi=True)) == list(expected.items(multi=True))
    assert query_parameters(environ).to_dict() == expected.to_dict()
