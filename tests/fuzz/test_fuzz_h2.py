"""Property tests of the HTTP/2 response path, plain and as gRPC unary calls (tests/fuzz/feed.py
with http2=True or grpc=True: the real Core and HTTP/2 connector over a loopback socket, prior
knowledge), split at arbitrary points: nothing escapes a callback, nothing hangs, every input
ends as exactly one response or one counted error, and a valid response (a real HTTP/2
server's bytes, from the h2 package) is read the same however it is split, or as a read error
when cut short.

Bounded: a few hundred examples in all, seconds. The HTTP/1.1 twin is test_fuzz_http1.py."""

import feed
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crestline.measure.result import GRPC_ERROR_KINDS

SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
FINAL = {200: "ok", 204: "ok", 302: "ok", 404: "http_4xx", 429: "http_4xx", 500: "http_5xx",
         503: "http_5xx"}
_NAME = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=24)
_SKIP = {"content-length", "connection", "transfer-encoding", "te", "upgrade", "keep-alive",
         "proxy-connection", "content-type", "grpc-status", "grpc-message"}


def _grpc_outcome(code: int) -> str:
    # codes past 16 are unknown ones: read as UNKNOWN (2), as gRPC clients do
    return "ok" if code == 0 else GRPC_ERROR_KINDS[(code if code <= 16 else 2) - 1]


@st.composite
def responses(draw, grpc: bool) -> tuple[bytes, bytes, str]:
    """(what a real HTTP/2 server writes: its SETTINGS and the ACK of the client's; then to
    answer stream 1 HEADERS (HPACK with dynamic-table inserts and Huffman, as h2 encodes),
    DATA in chunks, maybe trailers; the outcome it must give). With grpc: length-prefixed
    messages and grpc-status in the trailers, or trailers-only, or an HTTP error status."""
    headers = [(n, v) for n, v in draw(st.lists(st.tuples(_NAME, _VALUE), max_size=4))
               if n not in _SKIP]
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "POST" if grpc else "GET"), (":path", "/fuzz"),
                            (":scheme", "http"), (":authority", "fuzz")], end_stream=True)
    server = H2Connection(H2Configuration(client_side=False))
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    greeting = server.data_to_send()
    if grpc:
        status = draw(st.sampled_from([200] * 4 + [404, 503]))
        code = draw(st.integers(0, 17))
        outcome = _grpc_outcome(code) if status == 200 else FINAL[status]
        grpc_trailers = [("grpc-status", str(code)), ("grpc-message", draw(_VALUE))]
        if status == 200 and draw(st.booleans()):  # trailers-only
            server.send_headers(1, [(":status", "200"), ("content-type", "application/grpc"),
                                    *headers, *grpc_trailers], end_stream=True)
            return greeting, server.data_to_send(), outcome
        messages = draw(st.lists(st.binary(max_size=100), max_size=2))
        body = b"".join(b"\0" + len(m).to_bytes(4, "big") + m for m in messages)
        first = [(":status", str(status)), ("content-type", "application/grpc")]
        trailers = grpc_trailers if status == 200 else draw(st.sampled_from([[], grpc_trailers]))
    else:
        status = draw(st.sampled_from(sorted(FINAL)))
        outcome = FINAL[status]
        body = b"" if status == 204 else draw(st.binary(max_size=300))
        first = [(":status", str(status))]
        trailers = draw(st.sampled_from([[], [("x-trailer", "1")]]))
    chunks = [c for c in feed.split(body, draw(st.lists(st.integers(1, max(1, len(body))),
                                                       max_size=3))) if c]
    server.send_headers(1, first + headers, end_stream=not chunks and not trailers)
    for i, c in enumerate(chunks):
        server.send_data(1, c, end_stream=i == len(chunks) - 1 and not trailers)
    if trailers:
        server.send_headers(1, trailers, end_stream=True)
    return greeting, server.data_to_send(), outcome


def cut_points(data_len: int):
    return st.lists(st.integers(0, data_len), max_size=8)


pytestmark = pytest.mark.parametrize("feeder", [{"http2": True}, {"grpc": True}],
                                     ids=["http2", "grpc"], indirect=True, scope="module")


@SETTINGS
@given(data=st.binary(max_size=512), cuts=st.lists(st.integers(0, 512), max_size=8))
def test_arbitrary_bytes_end_as_one_outcome(feeder, data, cuts):
    feed.settled(feeder, feed.split(data, cuts))


@SETTINGS
@given(data=st.data())
def test_a_valid_response_is_read_the_same_however_it_is_split(feeder, data):
    greeting, raw, expected = data.draw(responses(feeder.grpc))
    parts = feed.split(raw, data.draw(cut_points(len(raw))))
    assert feed.settled(feeder, parts, greeting) == expected, feeder.messages


@SETTINGS
@given(data=st.data())
def test_a_cut_short_response_is_a_read_error(feeder, data):
    greeting, raw, _ = data.draw(responses(feeder.grpc))
    end = data.draw(st.integers(0, len(raw) - 1))
    parts = feed.split(raw[:end], data.draw(cut_points(end)))
    assert feed.settled(feeder, parts, greeting) == "read", feeder.messages


@SETTINGS
@given(data=st.data())
def test_a_mutated_response_ends_as_one_outcome(feeder, data):
    greeting, raw, _ = data.draw(responses(feeder.grpc))
    at = data.draw(st.integers(0, len(raw) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=8))
    mutated = raw[:at] + junk + raw[at + data.draw(st.integers(0, 3)):]
    feed.settled(feeder, feed.split(mutated, data.draw(cut_points(len(mutated)))), greeting)
