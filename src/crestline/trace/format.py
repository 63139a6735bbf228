"""The `.cltrace` recorded-traffic format: a msgpack stream of a header, one record per request
and a trailer. Pure Python (msgpack, numpy); never imports the compiled core.

The layout is specified in `docs/trace-format.md`. In short:

- record 0, the header (map): `{"format": "crestline-trace", "version": 1, "created_unix_s",
  "source", "base_url", "meta", "fields", "checksum": "crc32"}`;
- one positional array per request: `[offset_ns, method, path, headers, body, extras]`, with
  `headers` `[[name, value], ...]` or nil, `body` bin or nil, `extras` a map or nil; readers
  ignore elements past the sixth;
- the trailer (map): `{"end": true, "count": N, "duration_ns": last offset, "crc32": ...}`.

msgpack iteration stops silently at a truncated object, so a reader trusts a file only when it
has seen the trailer, the trailer's count matches, every byte of the file was consumed, and the
CRC-32 of every byte before the trailer matches the trailer's `crc32`.
"""

from __future__ import annotations

import os
import time
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgpack
import numpy as np

from crestline.errors import ConfigError

TRACE_FORMAT = "crestline-trace"
TRACE_VERSION = 1
TRACE_FIELDS = ("offset_ns", "method", "path", "headers", "body", "extras")
DEFAULT_MAX_RECORD_BYTES = 64 << 20
_BATCH_RECORDS = 4096
_READ_SIZE = 1 << 20
# The trailer is a few dozen bytes; the reader keeps at least this many trailing bytes un-hashed
# so it can compute the CRC of everything before the trailer once it knows where that starts.
_CRC_TAIL_BYTES = 4096


class TraceError(ConfigError):
    """A trace file that cannot be read or written: the message names the file and the fix."""


@dataclass
class TraceRecord:
    """One recorded request. `offset_ns`: int64 ns from the trace's origin (normally the first
    request); `headers`: (name, value) pairs in order, repeats allowed, without Host or
    Content-Length (the engine sets those); `body`: raw bytes; `extras`: optional facts about
    the request, such as {"model": "ranker"}."""

    offset_ns: int
    method: str
    path: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    extras: dict | None = None


@dataclass
class Trace:
    """A whole trace in memory: `header` (the header map), `records`, `trailer`."""

    header: dict
    records: list[TraceRecord]
    trailer: dict

    @property
    def offsets_ns(self) -> np.ndarray:
        """Every record's offset, int64 ns, non-decreasing."""
        return np.fromiter((r.offset_ns for r in self.records), dtype=np.int64,
                           count=len(self.records))

    @property
    def duration_s(self) -> float:
        """Offset of the last request, in seconds (0 for an empty trace)."""
        return self.records[-1].offset_ns / 1e9 if self.records else 0.0

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def base_url(self) -> str | None:
        return self.header.get("base_url")


# --------------------------------------------------------------------------------------------
# Writing


class TraceWriter:
    """Writes a `.cltrace` file. Use as a context manager, or call `close()`: the trailer it
    writes is what makes the file valid. Leaving the `with` block on an exception closes the
    file *without* a trailer, so readers refuse it as truncated rather than trust half a trace.

    `write(rec)` raises TraceError for a malformed record or an offset smaller than the last.
    """

    def __init__(self, path: str | os.PathLike, *, source: str, base_url: str | None = None,
                 meta: dict | None = None):
        self.path = os.fspath(path)
        self.count = 0
        self._last_offset_ns = 0
        self._crc = 0
        self._batch: list[bytes] = []
        self._packer = msgpack.Packer(use_bin_type=True)
        header = {"format": TRACE_FORMAT, "version": TRACE_VERSION,
                  "created_unix_s": time.time(), "source": str(source),
                  "base_url": base_url, "meta": dict(meta or {}),
                  "fields": list(TRACE_FIELDS), "checksum": "crc32"}
        try:
            packed = self._packer.pack(header)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TraceError(f"cannot write trace header for {self.path}: meta must hold only "
                             f"msgpack types (str, int, float, bool, None, bytes, list, dict): "
                             f"{exc}") from None
        try:
            self._f = open(self.path, "wb")
        except OSError as exc:
            raise TraceError(f"cannot write trace {self.path}: {exc.strerror}") from None
        self._batch.append(packed)

    def write(self, rec: TraceRecord) -> None:
        """Append one request. Offsets must be non-decreasing and ≥ 0."""
        if self._f.closed:
            raise TraceError(f"{self.path}: the trace writer is closed")
        offset = rec.offset_ns
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
            raise TraceError(f"record {self.count}: offset_ns must be an integer of ns, "
                             f"got {offset!r}")
        offset = int(offset)
        if offset < 0 or offset >= 1 << 63:
            raise TraceError(f"record {self.count}: offset_ns {offset} is out of range "
                             f"(0 to 2**63-1 ns)")
        if offset < self._last_offset_ns:
            raise TraceError(f"record {self.count}: offset_ns {offset} is before the previous "
                             f"record's {self._last_offset_ns}: write records sorted by time")
        if not isinstance(rec.method, str) or not rec.method:
            raise TraceError(f"record {self.count}: method must be a non-empty string")
        if not isinstance(rec.path, str):
            raise TraceError(f"record {self.count}: path must be a string")
        headers = None
        if rec.headers:
            headers = []
            for h in rec.headers:
                if (len(h) != 2 or not isinstance(h[0], str) or not isinstance(h[1], str)):
                    raise TraceError(f"record {self.count}: headers must be (name, value) "
                                     f"string pairs, got {h!r}")
                headers.append([h[0], h[1]])
        if not isinstance(rec.body, (bytes, bytearray, memoryview)):
            raise TraceError(f"record {self.count}: body must be bytes, got "
                             f"{type(rec.body).__name__} (encode text first)")
        body = bytes(rec.body) if len(rec.body) else None
        if rec.extras is not None and not isinstance(rec.extras, dict):
            raise TraceError(f"record {self.count}: extras must be a dict or None")
        try:
            packed = self._packer.pack(
                [offset, rec.method, rec.path, headers, body, rec.extras or None])
        except (TypeError, ValueError, OverflowError) as exc:
            raise TraceError(f"record {self.count}: extras must hold only msgpack types: "
                             f"{exc}") from None
        self._batch.append(packed)
        self._last_offset_ns = offset
        self.count += 1
        if len(self._batch) >= _BATCH_RECORDS:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            data = b"".join(self._batch)
            self._batch.clear()
            self._crc = zlib.crc32(data, self._crc)
            self._f.write(data)

    def flush(self) -> None:
        """Write the records batched so far to the file (the file stays open, no trailer)."""
        if not self._f.closed:
            self._flush()
            self._f.flush()

    def close(self, extra: dict | None = None) -> None:
        """Write pending records and the trailer, and close the file. Idempotent. `extra`:
        further trailer keys (msgpack types; readers ignore keys they do not know)."""
        if self._f.closed:
            return
        self._flush()
        trailer = dict(extra or {})
        trailer.update({"end": True, "count": self.count,
                        "duration_ns": self._last_offset_ns, "crc32": self._crc})
        self._f.write(self._packer.pack(trailer))
        self._f.close()

    def abort(self) -> None:
        """Close without a trailer: the file stays, and readers refuse it as truncated."""
        if not self._f.closed:
            self._flush()
            self._f.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_trace(path: str | os.PathLike, records, *, source: str, base_url: str | None = None,
                meta: dict | None = None) -> int:
    """Write `records` (an iterable of TraceRecord) as a complete trace; returns the count."""
    with TraceWriter(path, source=source, base_url=base_url, meta=meta) as w:
        for rec in records:
            w.write(rec)
    return w.count


# --------------------------------------------------------------------------------------------
# Reading


class _CrcFile:
    """A read-only file wrapper that CRCs what msgpack reads, keeping the last few KiB un-hashed
    so that `crc_before(pos)` can cover exactly the bytes before the trailer."""

    def __init__(self, f):
        self._f = f
        self._crc = 0
        self._hashed = 0  # bytes folded into _crc
        self._pending: deque[bytes] = deque()
        self._pending_len = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if data:
            self._pending.append(data)
            self._pending_len += len(data)
            while (len(self._pending) > 1
                   and self._pending_len - len(self._pending[0]) >= _CRC_TAIL_BYTES):
                old = self._pending.popleft()
                self._crc = zlib.crc32(old, self._crc)
                self._hashed += len(old)
                self._pending_len -= len(old)
        return data

    def crc_before(self, pos: int) -> int | None:
        if pos < self._hashed:
            return None
        return zlib.crc32(b"".join(self._pending)[: pos - self._hashed], self._crc)


class TraceReader:
    """Streams a trace: the header is read and checked on opening; iterating yields
    TraceRecord; the end checks (trailer, count, CRC, nothing left over) run when iteration
    finishes, so a damaged file raises TraceError at the latest at its end.

        with TraceReader("prod.cltrace") as r:
            print(r.header["base_url"])
            for rec in r:
                ...
        r.trailer  # set once iteration has finished

    `max_record_bytes` bounds the reader's buffer: a record (or a corrupt length) larger than
    it raises TraceError instead of allocating.
    """

    def __init__(self, path: str | os.PathLike, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
        self.path = os.fspath(path)
        self.max_record_bytes = int(max_record_bytes)
        self.trailer: dict | None = None
        try:
            self._f = open(self.path, "rb")
        except OSError as exc:
            raise TraceError(f"cannot read trace {self.path}: {exc.strerror}") from None
        try:
            self._size = os.fstat(self._f.fileno()).st_size
            self._src = _CrcFile(self._f)
            self._up = msgpack.Unpacker(
                self._src, raw=False, max_buffer_size=self.max_record_bytes,
                read_size=min(_READ_SIZE, self.max_record_bytes), strict_map_key=False)
            self.header = self._read_header()
        except BaseException:
            self._f.close()
            raise
        self._iterated = False

    # -- helpers that name the file and the fix --
    def _corrupted(self, what: str) -> TraceError:
        return TraceError(f"{self.path}: corrupted crestline trace: {what}; re-record or "
                          f"re-import it")

    def _truncated(self, what: str) -> TraceError:
        return TraceError(f"{self.path}: truncated crestline trace: {what} (was the writer "
                          f"interrupted, or the copy cut short?); re-record or re-import it")

    def _too_big(self, pos: int) -> TraceError:
        return TraceError(f"{self.path}: the object at byte {pos} is larger than "
                          f"max_record_bytes ({self.max_record_bytes} bytes): the file is "
                          f"corrupted, or it holds bodies that large and needs a larger "
                          f"max_record_bytes")

    def _read_header(self) -> dict:
        if self._size == 0:
            raise TraceError(f"{self.path}: empty file, not a crestline trace; make one with "
                             f"`crestline trace import`")
        try:
            header = self._up.unpack()
        except msgpack.OutOfData:
            raise self._truncated("the file ends inside the header") from None
        except msgpack.BufferFull:
            raise self._too_big(0) from None
        except (ValueError, TypeError, msgpack.UnpackException):
            header = None
        if not isinstance(header, dict) or header.get("format") != TRACE_FORMAT:
            raise TraceError(f"{self.path}: not a crestline trace (its first record is not a "
                             f"{TRACE_FORMAT!r} header); convert HAR or JSON Lines with "
                             f"`crestline trace import`")
        version = header.get("version")
        if version != TRACE_VERSION:
            raise TraceError(f"{self.path}: trace version {version!r} is not supported: this "
                             f"crestline reads version {TRACE_VERSION} (written by a newer "
                             f"crestline? upgrade crestline to read it)")
        return header

    def __iter__(self) -> Iterator[TraceRecord]:
        if self._iterated:
            raise TraceError(f"{self.path}: a TraceReader can be iterated once; open another")
        self._iterated = True
        try:
            yield from self._records()
        finally:
            self._f.close()

    def _records(self) -> Iterator[TraceRecord]:
        up = self._up
        n = 0
        last_offset = 0
        pos = up.tell()
        while True:
            try:
                obj = up.unpack()
            except msgpack.OutOfData:
                break
            except msgpack.BufferFull:
                raise self._too_big(pos) from None
            except (ValueError, TypeError, msgpack.UnpackException) as exc:
                raise self._corrupted(f"cannot decode the object at byte {pos} "
                                      f"(after record {n}): {exc}") from None
            if isinstance(obj, list):
                if self.trailer is not None:
                    raise self._corrupted(f"a record at byte {pos} follows the trailer")
                rec = self._record(obj, n, pos)
                if rec.offset_ns < last_offset:
                    raise self._corrupted(f"record {n} (byte {pos}) has offset_ns "
                                          f"{rec.offset_ns}, before the previous record's "
                                          f"{last_offset}")
                last_offset = rec.offset_ns
                n += 1
                pos = up.tell()
                yield rec
                continue
            if isinstance(obj, dict) and obj.get("end") is True and self.trailer is None:
                self._check_trailer(obj, n, last_offset, pos)
                self.trailer = obj
                pos = up.tell()
                continue
            what = "the trailer" if self.trailer is not None else f"record {n}"
            raise self._corrupted(f"unexpected {type(obj).__name__} at byte {pos} where "
                                  f"{what} should be")
        # After OutOfData, tell() counts the partial object too (msgpack keeps it to resume a
        # feed), so the end of the last complete object is `pos`.
        end = pos
        if self.trailer is None:
            if end < self._size:
                raise self._truncated(f"the file ends inside the object at byte {end}, after "
                                      f"record {n}")
            raise self._truncated(f"no trailer after record {n}")
        if end != self._size:
            raise self._corrupted(f"{self._size - end} unexpected bytes after the trailer "
                                  f"(byte {end})")

    def _record(self, a: list, n: int, pos: int) -> TraceRecord:
        if len(a) < 5:
            raise self._corrupted(f"record {n} (byte {pos}) has {len(a)} fields, "
                                  f"at least 5 expected")
        offset, method, path, headers, body = a[0], a[1], a[2], a[3], a[4]
        extras = a[5] if len(a) > 5 else None
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise self._corrupted(f"record {n} (byte {pos}): offset_ns {offset!r} is not a "
                                  f"non-negative integer")
        if not isinstance(method, str) or not method or not isinstance(path, str):
            raise self._corrupted(f"record {n} (byte {pos}): method and path must be strings")
        if headers is None:
            pairs = []
        elif isinstance(headers, list):
            pairs = []
            for h in headers:
                if (not isinstance(h, list) or len(h) != 2 or not isinstance(h[0], str)
                        or not isinstance(h[1], str)):
                    raise self._corrupted(f"record {n} (byte {pos}): headers must be "
                                          f"[name, value] string pairs")
                pairs.append((h[0], h[1]))
        else:
            raise self._corrupted(f"record {n} (byte {pos}): headers must be an array or nil")
        if body is None:
            body = b""
        elif not isinstance(body, bytes):
            raise self._corrupted(f"record {n} (byte {pos}): body must be bin or nil")
        if extras is not None and not isinstance(extras, dict):
            raise self._corrupted(f"record {n} (byte {pos}): extras must be a map or nil")
        return TraceRecord(offset, method, path, pairs, body, extras or None)

    def _check_trailer(self, t: dict, n: int, last_offset: int, pos: int) -> None:
        count = t.get("count")
        if count != n:
            raise self._corrupted(f"the trailer counts {count!r} records, the file holds {n}")
        duration = t.get("duration_ns")
        if duration != last_offset:
            raise self._corrupted(f"the trailer's duration_ns {duration!r} is not the last "
                                  f"offset {last_offset}")
        declared = self.header.get("checksum") == "crc32"
        if "crc32" in t or declared:
            crc = self._src.crc_before(pos)
            if "crc32" not in t:
                raise self._corrupted("the header declares a crc32 checksum; the trailer has "
                                      "none")
            if crc is None or crc != t["crc32"]:
                raise self._corrupted("the CRC-32 of the header and records does not match "
                                      "the trailer's (a byte changed)")

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_records(path: str | os.PathLike,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[TraceRecord]:
    """Stream a trace's records. Raises TraceError, at the latest when the iteration reaches the
    end of a damaged file, so a consumer must finish the iteration before trusting the data."""
    yield from TraceReader(path, max_record_bytes)


def read_trace(path: str | os.PathLike,
               max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Trace:
    """Read and check a whole trace. Raises TraceError: not a trace, unknown version,
    truncated, corrupted, or a record over `max_record_bytes`."""
    r = TraceReader(path, max_record_bytes)
    records = list(r)
    return Trace(header=r.header, records=records, trailer=r.trailer)
