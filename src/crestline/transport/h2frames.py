"""Requests rendered once as HTTP/2 frames for crestline._h2 (stream id 0: patched per send).

Header blocks use HPACK without the dynamic table: each field is a static-table index when
the pair is there, else a literal without indexing (the name indexed when the static table
has it), never Huffman-coded. So every block stands alone and can be sent on any stream of
any connection in any order: the encoder state the server keeps never changes.
"""

from __future__ import annotations

from crestline import __version__

MAX_FRAME = 16384  # SETTINGS_MAX_FRAME_SIZE's floor: every server takes frames this large
DATA, HEADERS, CONTINUATION = 0, 1, 9
END_STREAM, END_HEADERS = 0x1, 0x4
# RFC 9113 section 8.2.2: connection-specific fields an HTTP/2 request must not carry.
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
               b"upgrade", b"host"}


def _static():
    from hpack.table import HeaderTable  # the RFC 7541 appendix A table, 1-based

    pairs, names = {}, {}
    for i, (name, value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
        pairs.setdefault((name, value), i)
        names.setdefault(name, i)
    return pairs, names


_PAIRS, _NAMES = _static()


def _int(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 section 5.1) with `first`'s high bits above the prefix."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes((first | value,))
    out = [first | top]
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(s: bytes) -> bytes:
    return _int(len(s), 7, 0) + s


def encode_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """One HPACK header block that inserts nothing into the dynamic table."""
    out = []
    for name, value in headers:
        index = _PAIRS.get((name, value))
        if index is not None:
            out.append(_int(index, 7, 0x80))
            continue
        name_index = _NAMES.get(name)
        if name_index is not None:
            out.append(_int(name_index, 4, 0x00) + _string(value))
        else:
            out.append(b"\x00" + _string(name) + _string(value))
    return b"".join(out)


def frame(ftype: int, flags: int, payload: bytes) -> bytes:
    n = len(payload)
    return bytes((n >> 16, (n >> 8) & 0xFF, n & 0xFF, ftype, flags, 0, 0, 0, 0)) + payload


def request_frames(headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """HEADERS (+ CONTINUATION) then DATA frames of at most MAX_FRAME bytes, END_STREAM on
    the last; stream id 0 in every frame header."""
    block = encode_headers(headers)
    parts = [block[i:i + MAX_FRAME] for i in range(0, len(block), MAX_FRAME)] or [b""]
    out = []
    for i, part in enumerate(parts):
        flags = (END_HEADERS if i == len(parts) - 1 else 0)
        if i == 0:
            out.append(frame(HEADERS, flags | (0 if body else END_STREAM), part))
        else:
            out.append(frame(CONTINUATION, flags, part))
    for i in range(0, len(body), MAX_FRAME):
        last = i + MAX_FRAME >= len(body)
        out.append(frame(DATA, END_STREAM if last else 0, body[i:i + MAX_FRAME]))
    return b"".join(out)


def from_http1(request: bytes, scheme: str) -> bytes:
    """An HTTP/1.1 request as rendered by crestline.engine.spec.render_request (or recorded
    in a trace) as HTTP/2 frames: the request line and Host become pseudo-headers, names
    lower-case, connection-specific fields dropped."""
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, _version = lines[0].split(b" ", 2)
    fields, authority = [], b""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"host":
            authority = value
        if name in _HOP_BY_HOP or (name == b"te" and value.lower() != b"trailers"):
            continue
        fields.append((name, value))
    pseudo = [(b":method", method), (b":scheme", scheme.encode()), (b":path", target)]
    if authority:
        pseudo.append((b":authority", authority))
    return request_frames(pseudo + fields, body)


def grpc_frames(path: str, authority: str, scheme: str, message: bytes,
                headers: list[tuple[str, str]] = ()) -> bytes:
    """One unary gRPC call (gRPC over HTTP/2: PROTOCOL-HTTP2.md): POST to /package.Service/
    Method, content-type application/grpc, te: trailers, then the message as one
    length-prefixed, uncompressed gRPC message."""
    fields = [(b":method", b"POST"), (b":scheme", scheme.encode()),
              (b":path", path.encode()), (b":authority", authority.encode()),
              (b"content-type", b"application/grpc"), (b"te", b"trailers"),
              (b"user-agent", f"crestline/{__version__}".encode())]
    given = {k.lower() for k, _ in headers}
    fields = [f for f in fields if f[0].decode() not in given or f[0].startswith(b":")]
    fields += [(k.lower().encode(), v.encode()) for k, v in headers]
    return request_frames(fields, b"\x00" + len(message).to_bytes(4, "big") + message)
