"""Requests rendered as HTTP/2 frames (crestline.transport.h2frames), read back by the `h2`
project's own HPACK decoder: every header survives, and nothing enters the dynamic table."""

from __future__ import annotations

import pytest

from crestline.engine.spec import render_request
from crestline.transport.h2frames import MAX_FRAME, from_http1, grpc_frames

hpack = pytest.importorskip("hpack")


def _frames(data: bytes):
    out, off = [], 0
    while off < len(data):
        n = int.from_bytes(data[off:off + 3], "big")
        out.append((data[off + 3], data[off + 4], int.from_bytes(data[off + 5:off + 9], "big"),
                    data[off + 9:off + 9 + n]))
        off += 9 + n
    assert off == len(data)
    return out


def test_http1_request_becomes_headers_and_data_without_table_inserts():
    req = render_request("POST", "/v2/models/m/infer?x=1", "127.0.0.1:8000",
                         [("Content-Type", "application/json"), ("Connection", "keep-alive"),
                          ("X-Long", "v" * 300)], b"b" * (2 * MAX_FRAME + 5))
    frames = _frames(from_http1(req, "http"))
    (t, flags, sid, block), *data = frames
    assert (t, flags, sid) == (1, 0x4, 0)  # HEADERS, END_HEADERS, stream id to be patched
    dec = hpack.Decoder()
    headers = dict(dec.decode(block))
    assert headers[":method"] == "POST" and headers[":path"] == "/v2/models/m/infer?x=1"
    assert headers[":scheme"] == "http" and headers[":authority"] == "127.0.0.1:8000"
    assert headers["content-type"] == "application/json" and headers["x-long"] == "v" * 300
    assert "connection" not in headers and "host" not in headers
    assert len(dec.header_table.dynamic_entries) == 0  # blocks stand alone
    assert [(t, f, len(p)) for t, f, _, p in data] == [(0, 0, MAX_FRAME), (0, 0, MAX_FRAME),
                                                       (0, 1, 5)]


def test_get_ends_the_stream_on_its_headers():
    frames = _frames(from_http1(render_request("GET", "/", "h", [], b""), "https"))
    assert len(frames) == 1 and frames[0][1] == 0x5  # END_HEADERS | END_STREAM


def test_grpc_call_is_one_length_prefixed_message():
    (_, _, _, block), (t, flags, _, body) = _frames(
        grpc_frames("/inference.GRPCInferenceService/ModelInfer", "h:1", "http", b"\x0a\x01m"))
    headers = dict(hpack.Decoder().decode(block))
    assert headers["content-type"] == "application/grpc" and headers["te"] == "trailers"
    assert headers[":method"] == "POST"
    assert (t, flags, body) == (0, 1, b"\x00\x00\x00\x00\x03\x0a\x01m")
