"""The .cltrace format: round trip, streaming, and every kind of damage detected."""

import msgpack
import numpy as np
import pytest

from crestline.trace.format import (
    TRACE_FORMAT,
    TraceError,
    TraceReader,
    TraceRecord,
    TraceWriter,
    iter_records,
    read_trace,
    write_trace,
)

RECORDS = [
    TraceRecord(0, "POST", "/v2/models/ranker/infer",
                [("content-type", "application/json"), ("x-a", "1"), ("x-a", "2")],
                b'{"inputs": []}', {"model": "ranker", "tags": ["a", 1]}),
    TraceRecord(1_500, "GET", "/health", [], b"", None),
    TraceRecord(1_500, "PUT", "/données/ü?q=ä", [("x-bin", "ok")], bytes(range(256)) * 3, None),
    TraceRecord(9_000_000_000, "POST", "/v1/models/m:predict", [], b"\x00\xff\x00", {"k": None}),
]


def write(path, records=RECORDS, **kw):
    write_trace(path, records, source="test", base_url="http://127.0.0.1:8000", **kw)
    return path


def test_round_trip_keeps_every_field(tmp_path):
    p = write(tmp_path / "a.cltrace", meta={"note": "ü"})
    t = read_trace(p)
    assert t.records == RECORDS
    assert t.header["format"] == TRACE_FORMAT and t.header["version"] == 1
    assert t.header["source"] == "test" and t.base_url == "http://127.0.0.1:8000"
    assert t.header["meta"] == {"note": "ü"}
    assert t.header["fields"] == ["offset_ns", "method", "path", "headers", "body", "extras"]
    assert t.trailer["count"] == 4 and t.trailer["duration_ns"] == 9_000_000_000
    assert t.offsets_ns.dtype == np.int64
    assert t.offsets_ns.tolist() == [0, 1_500, 1_500, 9_000_000_000]
    assert t.duration_s == 9.0 and t.count == 4


def test_streaming_read_across_write_batches(tmp_path):
    p = tmp_path / "big.cltrace"
    with TraceWriter(p, source="test") as w:
        for i in range(10_000):  # more than one 4k write batch
            w.write(TraceRecord(i * 1000, "POST", f"/p/{i % 7}", [], i.to_bytes(4, "little")))
    with TraceReader(p) as r:
        assert r.header["base_url"] is None
        n = 0
        for n, rec in enumerate(r, 1):
            assert int.from_bytes(rec.body, "little") == n - 1
        assert n == 10_000 and r.trailer["count"] == 10_000
    assert sum(1 for _ in iter_records(p)) == 10_000


def test_empty_trace_is_valid(tmp_path):
    p = write(tmp_path / "e.cltrace", records=[])
    t = read_trace(p)
    assert t.records == [] and t.duration_s == 0.0 and t.offsets_ns.size == 0


def test_readers_ignore_unknown_trailing_elements(tmp_path):
    p = tmp_path / "x.cltrace"
    pk = msgpack.Packer(use_bin_type=True)
    p.write_bytes(pk.pack({"format": TRACE_FORMAT, "version": 1, "source": "other tool"})
                  + pk.pack([5, "GET", "/", None, None, None, "future", 1])
                  + pk.pack([7, "GET", "/b", [["a", "b"]], b"x"])  # five fields: no extras
                  + pk.pack({"end": True, "count": 2, "duration_ns": 7}))
    t = read_trace(p)
    assert [(r.offset_ns, r.path, r.headers, r.body) for r in t.records] == [
        (5, "/", [], b""), (7, "/b", [("a", "b")], b"x")]


def test_unknown_version_and_foreign_files(tmp_path):
    pk = msgpack.Packer(use_bin_type=True)
    p = tmp_path / "v2.cltrace"
    p.write_bytes(pk.pack({"format": TRACE_FORMAT, "version": 2}))
    with pytest.raises(TraceError, match="version 2 .*newer crestline"):
        read_trace(p)
    p.write_bytes(b'{"t": 1, "path": "/"}\n')
    with pytest.raises(TraceError, match="not a crestline trace.*trace import"):
        read_trace(p)
    p.write_bytes(pk.pack({"format": "crestline-runlog", "version": 1}))
    with pytest.raises(TraceError, match="not a crestline trace"):
        read_trace(p)
    p.write_bytes(b"")
    with pytest.raises(TraceError, match="empty file"):
        read_trace(p)
    with pytest.raises(TraceError, match="cannot read trace"):
        read_trace(tmp_path / "missing.cltrace")


def test_truncation_at_every_byte_is_detected(tmp_path):
    data = write(tmp_path / "a.cltrace").read_bytes()
    cut = tmp_path / "cut.cltrace"
    for n in range(1, len(data)):
        cut.write_bytes(data[:n])
        with pytest.raises(TraceError, match="truncated") as e:
            read_trace(cut)
        msg = str(e.value)
        assert "\n" not in msg and str(cut) in msg and "re-record or re-import" in msg


def test_a_writer_that_dies_leaves_a_file_readers_refuse(tmp_path):
    p = tmp_path / "a.cltrace"
    with pytest.raises(RuntimeError):
        with TraceWriter(p, source="test") as w:
            w.write(RECORDS[0])
            raise RuntimeError("boom")
    with pytest.raises(TraceError, match="truncated.*no trailer after record 1"):
        read_trace(p)


def test_every_flipped_byte_is_detected(tmp_path):
    data = write(tmp_path / "a.cltrace").read_bytes()
    bad = tmp_path / "bad.cltrace"
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        bad.write_bytes(bytes(flipped))
        with pytest.raises(TraceError):
            read_trace(bad)


def test_a_flipped_body_byte_fails_the_checksum(tmp_path):
    data = write(tmp_path / "a.cltrace").read_bytes()
    i = data.index(bytes(range(256))) + 100
    bad = tmp_path / "bad.cltrace"
    bad.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    with pytest.raises(TraceError, match="corrupted.*CRC-32"):
        read_trace(bad)


@pytest.mark.parametrize("tail", [b"\x00", b"\xc1", b"\x92\x01", msgpack.packb([1, "GET", "/"])])
def test_bytes_after_the_trailer_are_detected(tmp_path, tail):
    p = write(tmp_path / "a.cltrace")
    p.write_bytes(p.read_bytes() + tail)
    with pytest.raises(TraceError, match="corrupted"):
        read_trace(p)


def test_reader_checks_shape_order_and_count(tmp_path):
    pk = msgpack.Packer(use_bin_type=True)
    head = pk.pack({"format": TRACE_FORMAT, "version": 1})
    cases = {
        "offset_ns 5, before": [[10, "GET", "/", None, None], [5, "GET", "/", None, None]],
        "fields, at least 5": [[10, "GET", "/"]],
        "body must be bin": [[10, "GET", "/", None, "text"]],
        "headers must be": [[10, "GET", "/", [["a"]], None]],
        "not a non-negative": [[-1, "GET", "/", None, None]],
    }
    p = tmp_path / "s.cltrace"
    for what, recs in cases.items():
        last = recs[-1][0]
        p.write_bytes(head + b"".join(pk.pack(r) for r in recs)
                      + pk.pack({"end": True, "count": len(recs), "duration_ns": last}))
        with pytest.raises(TraceError, match=f"corrupted.*{what}"):
            read_trace(p)
    p.write_bytes(head + pk.pack([1, "GET", "/", None, None])
                  + pk.pack({"end": True, "count": 2, "duration_ns": 1}))
    with pytest.raises(TraceError, match="trailer counts 2 records, the file holds 1"):
        read_trace(p)


def test_writer_rejects_backwards_offsets_and_bad_fields(tmp_path):
    with TraceWriter(tmp_path / "w.cltrace", source="test") as w:
        w.write(TraceRecord(100, "GET", "/"))
        with pytest.raises(TraceError, match="before the previous record's 100"):
            w.write(TraceRecord(99, "GET", "/"))
        with pytest.raises(TraceError, match="body must be bytes"):
            w.write(TraceRecord(100, "GET", "/", [], "text"))
        with pytest.raises(TraceError, match="string pairs"):
            w.write(TraceRecord(100, "GET", "/", [("a", 1)]))
        with pytest.raises(TraceError, match="msgpack types"):
            w.write(TraceRecord(100, "GET", "/", [], b"", {"x": object()}))
        w.write(TraceRecord(np.int64(100), "GET", "/"))
    assert read_trace(tmp_path / "w.cltrace").offsets_ns.tolist() == [100, 100]


def test_oversize_record_is_refused_with_a_bounded_buffer(tmp_path):
    p = write(tmp_path / "a.cltrace", records=[TraceRecord(0, "POST", "/", [], b"x" * 5000)])
    with pytest.raises(TraceError, match="larger than max_record_bytes \\(1024 bytes\\)"):
        read_trace(p, max_record_bytes=1024)
    assert read_trace(p, max_record_bytes=8192).records[0].body == b"x" * 5000
