"""Token streams (text/event-stream) over HTTP/2 against a real HTTP/2 server on loopback
(tests/h2_server.py --sse, the `h2` package): an OpenAI-style chat stream measured exactly as
over HTTP/1.1 (the same scanner, counters and histograms), many streams on one connection, h2c
and ALPN h2, a stalled stream, a stream cut by RST_STREAM or GOAWAY, a stream timeout, and the
same stream read both ways giving the same token counts.

The server is told its timing (first token after --delay-ms, then one chunk each --sse-gap-ms),
so every figure is checked against what it was told; the bounds are wide because the machine is
shared."""

from __future__ import annotations

import functools
import json

import pytest

import crestline

pytest.importorskip("h2")
pytest.importorskip("cryptography")
from script_server import H2Server  # noqa: E402
from servers import stopped_at_teardown  # noqa: E402  (tests/ is on sys.path)
from test_h2 import _errors, _log  # noqa: E402

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "a b c d"}],
                   "max_tokens": 12, "stream": True,
                   "stream_options": {"include_usage": True}}).encode()


@pytest.fixture
def sse_server():
    yield from stopped_at_teardown(functools.partial(H2Server, "--sse"))


def _run(url, http2=True, **kw):
    kw = {"rate_rps": 20, "duration_s": 1.5, "connections": 1, "streams": 8, "timeout_s": 3,
          **kw}
    if not http2:
        # HTTP/1.1 carries one request per connection: as many connections as streams
        kw["connections"] *= kw.pop("streams")
    return crestline.run(url, http2=http2, method="POST", body=BODY,
                         headers=[("Content-Type", "application/json")], **kw).to_dict()


def _assert_stream_figures(d, tokens, delay_ms, gap_ms):
    """Every successful response streamed, counted by usage, with the server's timing."""
    ok = d["requests"]["ok"]
    st = d["stream"]
    assert st["streams"] == ok and st["usage_counted"] == ok and st["usage_mismatch"] == 0, st
    assert st["no_token"] == 0 and st["no_done"] == 0, st
    assert d["output_tokens"]["total"] == tokens * ok
    assert d["output_tokens"]["per_request"]["p50"] == tokens
    # the role-only prelude comes at once and is no token: TTFT is the server's delay
    assert delay_ms * 0.9 <= d["ttft_ms"]["p50"] < delay_ms + 60, d["ttft_ms"]
    assert d["ttft_sent_ms"]["p50"] <= d["ttft_ms"]["p50"]
    # tokens - 1 gaps per stream, each the server's gap (timers only ever fire late); on a
    # busy machine events that arrive in one read share its time, so single gaps can be ~0:
    # the mean holds the server's gap even then
    assert gap_ms * 0.5 <= d["itl_ms"]["mean"] < gap_ms + 25, d["itl_ms"]
    assert d["tpot_ms"]["p50"] == pytest.approx(d["itl_ms"]["mean"], rel=0.25)
    # the end follows the last token by one more gap
    assert d["e2e_ms"]["p50"] >= delay_ms + tokens * gap_ms * 0.9
    assert d["e2e_ms"]["p50"] == pytest.approx(d["latency_ms"]["p50"], rel=0.01)


def test_streams_over_h2c_are_measured_as_over_http1(sse_server, tmp_path):
    log = tmp_path / "h2.log"
    s = sse_server("--delay-ms", "40", "--sse-gap-ms", "10", "--sse-tokens", "12",
                   "--log", str(log))
    # 20 rps x ~160 ms: ~3 streams open at once, all on one socket
    d = _run(s.url, rate_rps=20, streams=8, connections=1)
    r = d["requests"]
    assert r["ok"] == r["scheduled"] == 30 and not _errors(d), r
    _assert_stream_figures(d, tokens=12, delay_ms=40, gap_ms=10)
    rows = _log(log)
    assert max(row["max_open"] for row in rows) >= 2  # streams did share the connection
    assert d["connection_setup_ms"]["connections"] == len({row["conn"] for row in rows}) == 1
    assert any("stream" in iv for iv in d["intervals"])


def test_streams_over_tls_by_alpn(certs, sse_server):
    s = sse_server("--tls", certs.good.cert, certs.good.key, "--delay-ms", "30",
                   "--sse-gap-ms", "8", "--sse-tokens", "10")
    d = _run(f"https://127.0.0.1:{s.port}/v1/chat/completions", cacert=certs.ca, streams=4)
    assert d["requests"]["ok"] == 30 and not _errors(d), d["requests"]
    _assert_stream_figures(d, tokens=10, delay_ms=30, gap_ms=8)
    assert d["connection_setup_ms"]["tls_handshake"]["p50"] > 0


def test_the_same_stream_over_http1_and_http2_counts_the_same(sse_server):
    # Three tokens a chunk: usage (36) and the events counted (12) disagree, flagged both
    # ways. Over HTTP/2 every event is split across two DATA frames, each padded: neither the
    # split nor the padding is any part of the stream.
    s = sse_server("--http1", "--delay-ms", "20", "--sse-gap-ms", "10", "--sse-tokens", "12",
                   "--sse-tokens-per-chunk", "3", "--pad", "9", "--split-events")
    d1 = _run(s.url, http2=False, streams=4)
    d2 = _run(s.url, http2=True, streams=4)
    for d in (d1, d2):
        r = d["requests"]
        assert r["ok"] == r["scheduled"] == 30 and not _errors(d), r
        assert d["stream"]["usage_mismatch"] == d["stream"]["streams"] == 30, d["stream"]
    assert d1["output_tokens"] == d2["output_tokens"]
    assert d1["output_tokens"]["total"] == 36 * 30
    assert {k: d1["stream"][k] for k in ("usage_counted", "events_counted", "no_done")} == {
        k: d2["stream"][k] for k in ("usage_counted", "events_counted", "no_done")}
    # TPOT is over the usage tokens (36), ITL over the events' gaps (~10 ms): both the same
    # both ways
    assert d2["itl_ms"]["p50"] == pytest.approx(d1["itl_ms"]["p50"], abs=8)
    assert d2["tpot_ms"]["p50"] == pytest.approx(d1["tpot_ms"]["p50"], abs=3)
    assert d2["tpot_ms"]["p50"] < d2["itl_ms"]["p50"] / 2


def test_a_stalled_stream_shows_in_ttft_while_others_flow(sse_server):
    # Every 5th stream waits 400 ms before its first token; the others flow beside it.
    s = sse_server("--delay-ms", "20", "--sse-gap-ms", "5", "--sse-tokens", "6",
                   "--stall-every", "5", "--stall-ms", "400")
    d = _run(s.url, rate_rps=20, streams=16)
    assert d["requests"]["ok"] == 30 and not _errors(d)
    assert d["ttft_ms"]["max"] >= 400 and d["ttft_sent_ms"]["max"] >= 400
    assert d["ttft_ms"]["p50"] < 100  # 6 of 30 stalled: the median does not carry it


def test_a_stall_queues_the_next_streams_and_only_ttft_from_intended_shows_it(sse_server):
    # One stream at a time; every 10th stalls 400 ms between its 2nd and 3rd token. The
    # streams behind it wait in the client: TTFT from the intended send shows that wait,
    # TTFT from the actual send does not (coordinated omission), and ITL shows the stall.
    s = sse_server("--delay-ms", "5", "--sse-gap-ms", "5", "--sse-tokens", "4",
                   "--stall-every", "10", "--stall-at-token", "2", "--stall-ms", "400")
    d = _run(s.url, rate_rps=20, duration_s=2, streams=1, connections=1)
    assert d["requests"]["ok"] == 40 and not _errors(d)
    assert d["itl_ms"]["max"] >= 400
    assert d["ttft_ms"]["max"] > 300, d["ttft_ms"]
    assert d["ttft_sent_ms"]["p90"] < 200, d["ttft_sent_ms"]  # one scheduler hiccup aside
    assert d["ttft_ms"]["p90"] > 3 * d["ttft_sent_ms"]["p90"], (d["ttft_ms"], d["ttft_sent_ms"])


@pytest.mark.parametrize("http2, cut", [(False, "rst"), (True, "rst"), (True, "goaway")],
                         ids=["http1-close", "h2-rst-stream", "h2-goaway"])
def test_a_stream_cut_mid_way_is_a_read_error_in_no_stream_figure(sse_server, http2, cut):
    # Every 6th stream is cut after 3 of its 8 tokens: over HTTP/1.1 by resetting the socket,
    # over HTTP/2 by RST_STREAM, or by GOAWAY and closing the socket (which cuts every stream
    # open on it).
    s = sse_server("--http1", "--delay-ms", "10", "--sse-gap-ms", "10", "--sse-tokens", "8",
                   "--cut-every", "6", "--cut-after-tokens", "3", "--cut", cut)
    d = _run(s.url, http2=http2, rate_rps=24, streams=4)
    r = d["requests"]
    assert _errors(d).keys() == {"read"}, r
    assert r["ok"] + r["errors"] == r["scheduled"] == 36
    if cut == "goaway":
        assert 6 <= r["errors"] <= 24 and d["connection_setup_ms"]["connections"] >= 2
    else:
        assert r["errors"] == 6, r
    msgs = r["error_messages"]["read"]
    if cut == "rst":
        assert any("mid-response" in m for m in msgs), msgs
    else:
        # which a cut stream hears first races: the socket closing, the reset, or the GOAWAY
        # for the streams the server had not processed
        assert any("closed the connection" in m or "connection lost" in m
                   or "did not process the stream" in m for m in msgs), msgs
    # a cut stream never reaches the stream figures: only the complete ones are counted
    assert d["stream"]["streams"] == r["ok"] and d["output_tokens"]["total"] == 8 * r["ok"]
    assert d["output_tokens"]["per_request"]["p50"] == 8


def test_a_stream_timeout_resets_the_stream_and_keeps_the_connection(sse_server):
    # Every 5th stream stalls 3 s after its first token: past the 0.5 s timeout it is reset
    # (RST_STREAM CANCEL) and counted as a timeout; the socket carries on.
    s = sse_server("--delay-ms", "10", "--sse-gap-ms", "10", "--sse-tokens", "6",
                   "--stall-every", "5", "--stall-at-token", "1", "--stall-ms", "3000")
    d = _run(s.url, rate_rps=20, streams=8, timeout_s=0.5)
    r = d["requests"]
    assert _errors(d) == {"timeout": 6} and r["ok"] == 24, r
    assert d["connection_setup_ms"]["connections"] == 1
    assert d["stream"]["streams"] == 24 and d["output_tokens"]["total"] == 6 * 24


def test_what_makes_an_h2_response_a_stream():
    # The content-type test HTTP/1.1 uses too (crestline._sse.is_event_stream), read in the
    # compiled HPACK decoder, whatever the encoder's indexing and Huffman choices.
    from crestline._hpack import HpackDecoder
    from hpack import Encoder

    enc, dec = Encoder(), HpackDecoder()
    for value, want in [(b"text/event-stream", True), (b"Text/Event-Stream; charset=utf-8", True),
                        (b" text/event-stream", True), (b"text/event", False),
                        (b"application/json", False), (b"text/event-streak", False)]:
        dec.decode_all(enc.encode([(b":status", b"200"), (b"content-type", value)]))
        assert dec.event_stream is want, value
    dec.decode_all(enc.encode([(b":status", b"200")]))
    assert dec.event_stream is False


def test_a_plain_response_after_a_stream_on_the_same_slot_is_no_stream(sse_server):
    # One stream slot; every 2nd response is a plain one: the slot's scanner, on for the
    # stream before, must be off for it (a normal response, in no stream figure).
    s = sse_server("--delay-ms", "5", "--sse-gap-ms", "5", "--sse-tokens", "4",
                   "--plain-every", "2")
    d = _run(s.url, rate_rps=20, duration_s=1, streams=1, connections=1)
    r = d["requests"]
    assert r["ok"] == r["scheduled"] == 20 and not _errors(d), r
    assert d["stream"]["streams"] == 10 and d["output_tokens"]["total"] == 4 * 10, d["stream"]
    assert d["stream"]["no_token"] == 0 and d["stream"]["no_done"] == 0, d["stream"]


def test_a_content_type_that_only_starts_like_event_stream_is_no_stream(sse_server):
    s = sse_server("--sse-content-type", "text/event-streamer", "--sse-tokens", "2",
                   "--sse-gap-ms", "5")
    d = _run(s.url, rate_rps=10, duration_s=1, streams=2)
    assert d["requests"]["ok"] == 10 and not _errors(d), d["requests"]
    assert not d.get("stream") or not d["stream"]["streams"], d.get("stream")
    s2 = sse_server("--sse-content-type", "Text/Event-Stream; charset=utf-8", "--sse-tokens",
                    "2", "--sse-gap-ms", "5")
    d = _run(s2.url, rate_rps=10, duration_s=1, streams=2)
    assert d["requests"]["ok"] == 10 and d["stream"]["streams"] == 10, d.get("stream")


@pytest.mark.parametrize("fault, expect", [
    (("--bad-pad",), "shorter than its padding"),
    (("--continuation-flood", "20"), "header block over 256 KiB"),
], ids=["bad-padding-on-a-plain-response", "continuation-flood"])
def test_a_framing_fault_on_a_plain_response_is_a_protocol_error(h2_server, fault, expect):
    # Not a token stream: the checks hold for every response, not only scanned ones.
    s = h2_server(*fault)
    d = _run(s.url, rate_rps=5, duration_s=0.4, streams=1, timeout_s=2)
    r = d["requests"]
    assert r["ok"] == 0 and "protocol" in _errors(d), r
    assert any(expect in m for m in r["error_messages"]["protocol"]), r["error_messages"]
