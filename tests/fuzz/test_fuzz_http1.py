"""Property tests of the HTTP/1.1 response path (tests/fuzz/feed.py: the real Core and
transport over a loopback socket), split at arbitrary points: nothing escapes a callback,
nothing hangs, every input ends as exactly one response or one counted error, and a valid
response (or a cut-short one) is read the same however it is split.

Bounded: a few hundred examples in all, a few seconds. The long, coverage-guided run is
bench/fuzz_bench.py."""

import feed
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=80, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

_TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~",
                 min_size=1, max_size=12)
_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=24).map(
    str.strip)
_FRAMING_NAMES = {"content-length", "transfer-encoding", "connection"}
# Final statuses with a body as the framing says (204 and 304 never have one; 1xx are
# interim; 101 switches protocols), by the outcome each must give.
FINAL = {200: "ok", 201: "ok", 302: "ok", 404: "http_4xx", 429: "http_4xx", 500: "http_5xx",
         503: "http_5xx"}


@st.composite
def responses(draw) -> tuple[bytes, str]:
    """(a valid HTTP/1.1 response, possibly after interim 1xx responses; its outcome)."""
    status = draw(st.sampled_from(sorted(FINAL)))
    headers = [(n, v) for n, v in draw(st.lists(st.tuples(_TOKEN, _VALUE), max_size=4))
               if n.lower() not in _FRAMING_NAMES]
    body = draw(st.binary(max_size=300))
    head = f"HTTP/1.1 {status} {draw(st.sampled_from(['OK', 'X', '']))}\r\n"
    head += "".join(f"{n}: {v}\r\n" for n, v in headers)
    if draw(st.booleans()):
        raw = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    else:
        cuts = feed.split(body, draw(st.lists(st.integers(1, max(1, len(body))), max_size=4)))
        chunks = b"".join(b"%x%s\r\n%s\r\n" % (len(c), draw(st.sampled_from([b"", b";e=1"])), c)
                          for c in cuts if c)
        raw = (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
    interim = draw(st.sampled_from([b"", b"HTTP/1.1 100 Continue\r\n\r\n",
                                    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"]))
    return interim + raw, FINAL[status]


def cut_points(data_len: int):
    return st.lists(st.integers(0, data_len), max_size=8)


pytestmark = pytest.mark.parametrize("feeder", [{}], ids=["http1"], indirect=True,
                                     scope="module")


@SETTINGS
@given(data=st.binary(max_size=512), cuts=st.lists(st.integers(0, 512), max_size=8))
def test_arbitrary_bytes_end_as_one_outcome(feeder, data, cuts):
    feed.settled(feeder, feed.split(data, cuts))


@SETTINGS
@given(resp=responses(), data=st.data())
def test_a_valid_response_is_read_the_same_however_it_is_split(feeder, resp, data):
    raw, expected = resp
    assert feed.settled(feeder, feed.split(raw, data.draw(cut_points(len(raw))))) == expected


@SETTINGS
@given(resp=responses(), data=st.data())
def test_a_cut_short_response_is_a_read_error(feeder, resp, data):
    raw, _ = resp
    end = data.draw(st.integers(1, len(raw) - 1))
    parts = feed.split(raw[:end], data.draw(cut_points(end)))
    assert feed.settled(feeder, parts) == "read", feeder.messages


@SETTINGS
@given(resp=responses(), data=st.data())
def test_a_mutated_response_ends_as_one_outcome(feeder, resp, data):
    raw, _ = resp
    at = data.draw(st.integers(0, len(raw) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=8))
    mutated = raw[:at] + junk + raw[at + data.draw(st.integers(0, 3)):]
    feed.settled(feeder, feed.split(mutated, data.draw(cut_points(len(mutated)))))
