"""HTTP/2 client connections (RFC 9113), plain (prior knowledge, h2c) or over TLS (ALPN h2),
and gRPC unary calls over them.

One H2Session per socket carries up to min(--streams, the server's
SETTINGS_MAX_CONCURRENT_STREAMS) H2Stream Conns; each Conn is one request channel for the core
(crestline._seam), so the core's queue, in-flight bound and timeouts work unchanged. A request
arrives pre-rendered as HTTP/2 frames with stream id 0 (crestline.transport.h2frames, once per
payload); sending it patches the stream id into each frame header in C and writes the frames,
DATA as far as the send windows allow (the rest on WINDOW_UPDATE).

Response header blocks go, every one and in order, to the compiled HPACK decoder
(crestline._hpack: the dynamic table and Huffman strings are the server's choice); only
:status, grpc-status and grpc-message are kept, and whether the content-type is
`text/event-stream`: such a response is a token stream, its DATA payloads fed as they arrive to
the stream's own SseScanner (crestline._sse, the scanner HTTP/1.1 uses), so the core records
it exactly as it records one over HTTP/1.1.
Our receive windows are opened to the maximum once and the connection window refilled in large
steps, so a response is never held back by the client. PING is answered, GOAWAY stops new
streams (those the server did not process fail as `read` errors), RST_STREAM fails its
request, and a request timed out by the core is reset with RST_STREAM(CANCEL).
"""
import asyncio
from urllib.parse import unquote

from libc.stdint cimport int32_t, int64_t, uint32_t

from crestline._clock cimport now_ns
from crestline._hpack cimport HpackDecoder
from crestline._seam cimport (CONN_BUSY, ERR_CONNECT, ERR_GRPC, ERR_HTTP_4XX, ERR_HTTP_5XX,
                              ERR_PROTOCOL, ERR_READ, OUTCOME_OK, Conn, Connector, Owner)
from crestline._sse cimport SseScanner

cdef bytes PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

cdef enum:
    F_DATA = 0
    F_HEADERS = 1
    F_PRIORITY = 2
    F_RST_STREAM = 3
    F_SETTINGS = 4
    F_PUSH_PROMISE = 5
    F_PING = 6
    F_GOAWAY = 7
    F_WINDOW_UPDATE = 8
    F_CONTINUATION = 9

cdef enum:
    FL_END_STREAM = 0x1
    FL_ACK = 0x1
    FL_END_HEADERS = 0x4
    FL_PADDED = 0x8
    FL_PRIORITY = 0x20

cdef enum:
    MAX_FRAME = 16384           # we never raise SETTINGS_MAX_FRAME_SIZE
    MAX_HEADER_BLOCK = 262144   # one response's HEADERS + CONTINUATION payloads, at most
    MAX_WINDOW = 2147483647
    REFILL_AT = 1 << 30         # refill the connection window after this much DATA
    LAST_SID = 2147483000       # past this a session takes no new streams (ids run out)
    CANCEL = 8
    PROTOCOL_ERROR = 1
    COMPRESSION_ERROR = 9

ERROR_CODES = ("NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
               "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
               "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY",
               "HTTP_1_1_REQUIRED")
GRPC_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
              "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
              "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
              "UNAUTHENTICATED")

# Our SETTINGS: no push; stream receive windows at the maximum (each stream carries one
# response, so it never needs a WINDOW_UPDATE); then the connection window to the maximum.
cdef bytes CLIENT_START = (
    PREFACE
    + b"\x00\x00\x0c\x04\x00\x00\x00\x00\x00"
    + b"\x00\x02\x00\x00\x00\x00"
    + b"\x00\x04\x7f\xff\xff\xff"
    + b"\x00\x00\x04\x08\x00\x00\x00\x00\x00"
    + (2147483647 - 65535).to_bytes(4, "big"))


cdef inline uint32_t _u32(const unsigned char* p) noexcept:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef bytes _be32(uint32_t v):
    return bytes(((v >> 24) & 0xff, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff))


cdef str _code_name(uint32_t code):
    return ERROR_CODES[code] if code < len(ERROR_CODES) else f"error {code}"


cdef class H2Stream(Conn):
    """One stream slot of an H2Session: the core's Conn for one request at a time."""

    def __init__(self, H2Session session, Owner owner):
        self.session = session
        self.owner = owner
        self.attached = True
        self._reset()

    cdef _reset(self):
        self.sid = 0
        self.frames = None
        self.pos = 0
        self.status = 0
        self.grpc_status = -1
        self.grpc_message = None
        if self.sse is not None:
            # The core has read the last response's stream; the next response is a stream
            # only if its own headers say so.
            self.sse.active = False

    # -- the seam ---------------------------------------------------------------------------
    cdef send(self, object payload):
        cdef H2Session s = self.session
        cdef unsigned char* p
        cdef Py_ssize_t off = 0, n
        cdef int32_t sid
        if s.closed or not s.accepting:
            self.owner.conn_error(self, ERR_READ, "the HTTP/2 connection takes no new streams")
            return
        sid = s.next_sid
        s.next_sid += 2
        if s.next_sid > LAST_SID:
            s.accepting = False
        self._reset()
        self.frames = bytearray(payload)
        p = self.frames
        n = len(self.frames)
        # Patch the stream id into every frame header (the payload was rendered with id 0).
        while off + 9 <= n:
            p[off + 5] = (sid >> 24) & 0x7f
            p[off + 6] = (sid >> 16) & 0xff
            p[off + 7] = (sid >> 8) & 0xff
            p[off + 8] = sid & 0xff
            off += 9 + ((<Py_ssize_t>p[off] << 16) | (<Py_ssize_t>p[off + 1] << 8) | p[off + 2])
        self.sid = sid
        self.window = s.peer_initial_window
        s.streams[sid] = self
        s._push(self)

    cdef close(self):
        self.session._detach(self, self.sid != 0)

    cdef abort(self):
        self.session._detach(self, self.sid != 0)

    cdef str status_message(self, int status):
        cdef int code = self.grpc_status
        if code > 0:
            name = GRPC_CODES[code] if code < len(GRPC_CODES) else f"code {code}"
            msg = self.grpc_message
            # grpc-message is percent-encoded UTF-8 (gRPC's PROTOCOL-HTTP2.md)
            return f"grpc-status {code} {name}" + (
                f": {unquote(msg.decode('ascii', 'replace'))}" if msg else "")
        return f"HTTP {status}"


cdef class H2Session:
    """One HTTP/2 connection; also its asyncio protocol (see H2Protocol)."""

    def __init__(self, H2Base connector, Owner owner):
        self.connector = connector
        self.owner = owner
        self.decoder = HpackDecoder()
        self.rest = b""
        self.streams = {}
        self.conns = []
        self.blocked = []
        self.n_pending = 0
        self.conn_window = 65535
        self.peer_initial_window = 65535
        self.peer_max_streams = MAX_WINDOW
        self.next_sid = 1
        self.accepting = True

    cdef int limit(self):
        return min(self.connector.streams, self.peer_max_streams)

    cdef bint can_take(self):
        return (not self.closed and self.accepting
                and len(self.conns) + self.n_pending < self.limit())

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport):
        self.up_ns = now_ns()
        self.transport = transport
        self.write = transport.write
        if self.connector.ssl is not None:
            chosen = transport.get_extra_info("ssl_object").selected_alpn_protocol()
            if chosen != "h2":
                self._fail_pending(ERR_PROTOCOL, f"{self.connector.host}:{self.connector.port} "
                                   f"did not agree to HTTP/2 by ALPN (it chose {chosen!r})")
                self.closed = True
                transport.close()
                return
        self.write(CLIENT_START)
        # A server that never sends its SETTINGS (not an HTTP/2 server) fails the opens.
        self.settings_timer = self.connector.loop.call_later(
            self.connector.connect_timeout_s, self._settings_late)

    def _settings_late(self):
        if not self.ready and not self.closed:
            self._connection_error(PROTOCOL_ERROR, f"no HTTP/2 SETTINGS from "
                                   f"{self.connector.host}:{self.connector.port} within "
                                   f"{self.connector.connect_timeout_s:g} s: not an HTTP/2 server?")

    def data_received(self, data):
        cdef bytes b = self.rest + data if self.rest else data
        cdef const unsigned char* p = b
        cdef Py_ssize_t n = len(b), off = 0, ln
        # One time per read, as over HTTP/1.1: token events that arrive together share it.
        self.read_ns = now_ns()
        while n - off >= 9 and not self.closed:
            ln = (<Py_ssize_t>p[off] << 16) | (<Py_ssize_t>p[off + 1] << 8) | p[off + 2]
            if ln > MAX_FRAME:
                self._connection_error(PROTOCOL_ERROR, (
                    f"a {ln}-byte frame, over the 16384 we allow" if self.ready else
                    f"the server's first bytes are not HTTP/2 ({b[:16]!r}): not an HTTP/2 "
                    "server? (plain HTTP/2 needs a server that takes prior knowledge, h2c)"))
                return
            if n - off - 9 < ln:
                break
            self._frame(p[off + 3], p[off + 4], _u32(p + off + 5) & 0x7fffffff, b, off + 9, ln)
            off += 9 + ln
        self.rest = b[off:] if off < n else b""

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        cdef H2Stream st
        was_closed = self.closed
        self.closed = True
        if self.settings_timer is not None:
            self.settings_timer.cancel()
        try:
            self.connector.sessions.remove(self)
        except ValueError:
            pass
        if not was_closed:
            self._fail_pending(ERR_CONNECT, f"connection to {self.connector.host}:"
                               f"{self.connector.port} closed before its HTTP/2 SETTINGS")
        for st in list(self.conns):
            st.attached = False
            self.owner.conn_lost(st, exc)
        self.conns = []
        self.streams = {}

    # -- opening streams for the owner --------------------------------------------------------
    cdef _attach_ready(self):
        cdef H2Stream st
        cdef int room
        if self.closed:
            return
        if self.peer_max_streams == 0:
            # Another socket would be told the same: fail the opens instead of looping.
            self._fail_pending(ERR_PROTOCOL, f"{self.connector.host}:{self.connector.port} "
                               "allows no streams (SETTINGS_MAX_CONCURRENT_STREAMS 0)")
            self._maybe_close()
            return
        room = self.limit() - len(self.conns) if self.accepting else 0
        while self.n_pending > 0:
            self.n_pending -= 1
            if room > 0:
                room -= 1
                st = H2Stream(self, self.owner)
                self.conns.append(st)
                self.owner.conn_made(st)
            else:
                # The server allows fewer streams than asked for: another socket.
                self.connector.open(self.owner)

    def _attach_soon(self):
        self._attach_ready()

    cdef _fail_pending(self, int kind, str why):
        while self.n_pending > 0:
            self.n_pending -= 1
            self.owner.conn_failed(kind, why)

    # -- writing --------------------------------------------------------------------------------
    cdef _send_frame(self, int ftype, int flags, int32_t sid, bytes payload):
        cdef Py_ssize_t n = len(payload)
        head = bytes((n >> 16, (n >> 8) & 0xff, n & 0xff, ftype, flags, (sid >> 24) & 0x7f,
                      (sid >> 16) & 0xff, (sid >> 8) & 0xff, sid & 0xff))
        self.write(head + payload)

    cdef _push(self, H2Stream st):
        """Write what of st's frames the windows allow: HEADERS and CONTINUATION always,
        each DATA frame once both windows hold it."""
        cdef const unsigned char* p = st.frames
        cdef Py_ssize_t n = len(st.frames), start = st.pos, end = st.pos, ln
        while end + 9 <= n:
            ln = (<Py_ssize_t>p[end] << 16) | (<Py_ssize_t>p[end + 1] << 8) | p[end + 2]
            if p[end + 3] == F_DATA:
                if ln > self.conn_window or ln > st.window:
                    break
                self.conn_window -= ln
                st.window -= ln
            end += 9 + ln
        if end > start:
            # A written bytearray is never changed again (the next request makes its own).
            self.write(st.frames if start == 0 and end == n else st.frames[start:end])
        st.pos = end
        if end < n:
            if st not in self.blocked:
                self.blocked.append(st)
        else:
            st.frames = None

    cdef _flush_blocked(self):
        cdef H2Stream st
        for st in list(self.blocked):
            self.blocked.remove(st)
            if st.frames is not None and st.sid:
                self._push(st)
            if self.conn_window <= 0:
                break

    # -- reading ----------------------------------------------------------------------------
    cdef _frame(self, int ftype, int flags, int32_t sid, bytes data, Py_ssize_t off,
                Py_ssize_t ln):
        cdef const unsigned char* p = data
        cdef H2Stream st
        cdef int64_t inc
        if self.cont_sid and (ftype != F_CONTINUATION or sid != self.cont_sid):
            self._connection_error(PROTOCOL_ERROR, "a header block was interrupted")
            return
        if ftype == F_DATA:
            self._on_data(flags, sid, data, off, ln)
        elif ftype == F_HEADERS:
            self._on_headers(flags, sid, data, off, ln)
        elif ftype == F_CONTINUATION:
            if not self.cont_sid:
                self._connection_error(PROTOCOL_ERROR, "a CONTINUATION with no header block")
                return
            if len(self.cont_block) + ln > MAX_HEADER_BLOCK:
                # A CONTINUATION flood would otherwise grow the buffer without end: no real
                # response's headers come near this.
                self._connection_error(PROTOCOL_ERROR, (
                    f"a header block over {MAX_HEADER_BLOCK // 1024} KiB in CONTINUATION "
                    "frames"))
                return
            self.cont_block += data[off:off + ln]
            if flags & FL_END_HEADERS:
                self.cont_sid = 0
                whole, self.cont_block = bytes(self.cont_block), None
                self._header_block(sid, whole, self.cont_end)
        elif ftype == F_SETTINGS:
            self._on_settings(flags, data, off, ln)
        elif ftype == F_WINDOW_UPDATE:
            if ln != 4:
                self._connection_error(PROTOCOL_ERROR, "a WINDOW_UPDATE frame not 4 bytes long")
                return
            inc = _u32(p + off) & 0x7fffffff
            if inc == 0:
                self._connection_error(PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
                return
            if sid == 0:
                self.conn_window += inc
            else:
                st = self.streams.get(sid)
                if st is None:
                    return
                st.window += inc
            if self.blocked:
                self._flush_blocked()
        elif ftype == F_PING:
            if not flags & FL_ACK and ln == 8:
                self._send_frame(F_PING, FL_ACK, 0, data[off:off + 8])
        elif ftype == F_RST_STREAM:
            st = self.streams.get(sid)
            if st is not None and ln == 4:
                # mid-response: headers had come (a token stream cut mid-way, say)
                self._stream_failed(st, ERR_READ, "stream reset by the server"
                                    + (" mid-response: " if st.status else ": ")
                                    + _code_name(_u32(p + off)))
        elif ftype == F_GOAWAY:
            if ln >= 8:
                self._on_goaway(data, off)
        elif ftype == F_PUSH_PROMISE:
            self._connection_error(PROTOCOL_ERROR, "PUSH_PROMISE after we disabled push")
        # PRIORITY and unknown frame types are ignored, as RFC 9113 section 4.1 asks.

    cdef _on_headers(self, int flags, int32_t sid, bytes data, Py_ssize_t off, Py_ssize_t ln):
        cdef const unsigned char* p = data
        cdef Py_ssize_t pad = 0
        cdef H2Stream st
        if flags & FL_PADDED:
            pad = p[off]
            off += 1
            ln -= 1
        if flags & FL_PRIORITY:
            off += 5
            ln -= 5
        ln -= pad
        if ln < 0:
            self._connection_error(PROTOCOL_ERROR, "a HEADERS frame shorter than its padding")
            return
        block = data[off:off + ln]
        if flags & FL_END_HEADERS:
            self._header_block(sid, block, flags & FL_END_STREAM)
            return
        # The block goes on in CONTINUATION frames (kept whatever the stream: the decoder
        # must see every block whole).
        self.cont_sid = sid
        self.cont_block = bytearray(block)
        self.cont_end = flags & FL_END_STREAM

    cdef _header_block(self, int32_t sid, bytes block, bint end_stream):
        cdef H2Stream st
        cdef HpackDecoder dec = self.decoder
        cdef int status
        try:
            # Every block is decoded, also for streams we reset: the dynamic table is shared.
            dec.decode(block, None)
        except Exception as exc:
            self._connection_error(COMPRESSION_ERROR, f"bad HPACK header block: {exc!r}")
            return
        st = self.streams.get(sid)
        if st is None:
            return
        status = dec.status
        if dec.grpc_status >= 0:
            st.grpc_status = dec.grpc_status
            st.grpc_message = dec.grpc_message
        if status:
            if status < 200:
                return  # interim (100 Continue, 103 Early Hints): the final one follows
            st.status = status
            if dec.event_stream:
                if st.sse is None:
                    st.sse = SseScanner()  # once per stream slot, reused by its responses
                st.sse.start()
        if end_stream:
            self._complete(st)

    cdef _on_data(self, int flags, int32_t sid, bytes data, Py_ssize_t off, Py_ssize_t ln):
        cdef const unsigned char* p = data
        cdef Py_ssize_t pad = 0
        cdef H2Stream st
        self.recv_unacked += ln  # flow control counts the padding too
        if self.recv_unacked >= REFILL_AT:
            self._send_frame(F_WINDOW_UPDATE, 0, 0, _be32(<uint32_t>self.recv_unacked))
            self.recv_unacked = 0
        if flags & FL_PADDED:
            # RFC 9113 6.1 makes bad padding a connection error whatever the stream (one we
            # do not scan, or have forgotten, included): the framing can no longer be trusted.
            pad = p[off] if ln else 0
            if ln == 0 or pad >= ln:
                self._connection_error(PROTOCOL_ERROR, "a DATA frame shorter than its padding")
                return
        st = self.streams.get(sid)
        if st is None:
            return
        if st.sse is not None and st.sse.active:
            if flags & FL_PADDED:
                off += 1
                ln -= 1 + pad
            # The events of this payload are scanned in C, no Python call per event.
            st.sse.feed(p + off, ln, self.read_ns)
        if flags & FL_END_STREAM:
            self._complete(st)

    cdef _on_settings(self, int flags, bytes data, Py_ssize_t off, Py_ssize_t ln):
        cdef const unsigned char* p = data
        cdef Py_ssize_t i
        cdef int ident
        cdef int64_t value, delta
        cdef H2Stream st
        if flags & FL_ACK:
            return
        if ln % 6:
            self._connection_error(PROTOCOL_ERROR, "a SETTINGS frame not a multiple of 6 bytes")
            return
        for i in range(off, off + ln, 6):
            ident = (p[i] << 8) | p[i + 1]
            value = _u32(p + i + 2)
            if ident == 3:
                self.peer_max_streams = value
            elif ident == 4:
                if value > MAX_WINDOW:
                    self._connection_error(PROTOCOL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too big")
                    return
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for st in self.streams.values():
                    st.window += delta
        self._send_frame(F_SETTINGS, FL_ACK, 0, b"")
        if len(self.conns) > self.limit():
            # The server lowered its stream limit: idle streams past it leave now (the core
            # opens them elsewhere, counting nothing), busy ones when their response is in.
            for st in list(self.conns):
                if len(self.conns) <= self.limit():
                    break
                if st.state != CONN_BUSY:
                    self.owner.conn_error(st, ERR_READ, "the server lowered its stream limit")
        if not self.ready:
            self.ready = True
            if self.settings_timer is not None:
                self.settings_timer.cancel()
                self.settings_timer = None
            self._attach_ready()
        elif self.blocked:
            self._flush_blocked()

    cdef _on_goaway(self, bytes data, Py_ssize_t off):
        cdef const unsigned char* p = data
        cdef int32_t last = _u32(p + off) & 0x7fffffff
        cdef H2Stream st
        cdef str why = "GOAWAY " + _code_name(_u32(p + off + 4))
        self.accepting = False
        for st in list(self.streams.values()):
            if st.sid > last:
                self._stream_failed(st, ERR_READ, f"{why}: the server did not process the stream")
        # Idle streams cannot carry another request here: the core opens them elsewhere.
        for st in list(self.conns):
            if st.sid == 0 and st.attached and st.state != CONN_BUSY:
                self.owner.conn_error(st, ERR_READ, why)
        self._maybe_close()

    # -- outcomes ---------------------------------------------------------------------------
    cdef _complete(self, H2Stream st):
        cdef int64_t now = now_ns()
        cdef int status = st.status
        cdef int outcome, code
        if st.sse is not None and st.sse.active:
            st.sse.finish(now)  # an event the stream's end closes, not a blank line
        self.streams.pop(st.sid, None)
        st.sid = 0
        st.frames = None
        if st in self.blocked:
            self.blocked.remove(st)
        if self.connector.grpc:
            code = st.grpc_status
            if status != 200 and status:
                outcome = ERR_HTTP_5XX if status >= 500 else ERR_HTTP_4XX
            elif code < 0:
                self.owner.conn_error(st, ERR_PROTOCOL, f"a gRPC response without grpc-status "
                                      f"(HTTP {status})")
                return
            elif code == 0:
                outcome = OUTCOME_OK
            else:
                outcome = ERR_GRPC + (code if code <= 16 else 2) - 1
        elif status == 0:
            self.owner.conn_error(st, ERR_PROTOCOL, "a response that ended with no :status")
            return
        else:
            outcome = (ERR_HTTP_5XX if status >= 500 else ERR_HTTP_4XX if status >= 400
                       else OUTCOME_OK)
        self.owner.conn_done(st, now, outcome, status, self.accepting and not self.closed
                             and len(self.conns) <= self.limit())

    cdef _stream_failed(self, H2Stream st, int kind, str why):
        # The core aborts st (its abort does not reset a stream the server ended).
        self.streams.pop(st.sid, None)
        st.sid = 0
        self.owner.conn_error(st, kind, why)

    cdef _connection_error(self, int code, str why):
        """Fail everything on this connection: GOAWAY, close; each stream says conn_lost."""
        cdef H2Stream st
        if self.closed:
            return
        if self.transport is not None:
            self._send_frame(F_GOAWAY, 0, 0, _be32(self.next_sid - 2 if self.next_sid > 1 else 0)
                             + _be32(code))
        self.closed = True
        self._fail_pending(ERR_PROTOCOL, why)
        for st in list(self.streams.values()):
            if st.state == CONN_BUSY:
                self.owner.conn_error(st, ERR_PROTOCOL, why)
        if self.transport is not None:
            self.transport.close()

    cdef _detach(self, H2Stream st, bint reset):
        """st leaves the session (closed or aborted by the core): reset its stream if one is
        open, say conn_lost once, and close the socket when no stream is left."""
        if not st.attached:
            return
        st.attached = False
        if st.sid:
            self.streams.pop(st.sid, None)
            if reset and not self.closed and self.transport is not None:
                self._send_frame(F_RST_STREAM, 0, st.sid, _be32(CANCEL))
            st.sid = 0
        st.frames = None
        if st in self.blocked:
            self.blocked.remove(st)
        try:
            self.conns.remove(st)
        except ValueError:
            pass
        self.owner.conn_lost(st, None)
        self._maybe_close()

    cdef _maybe_close(self):
        # No stream uses the socket: close it, as an HTTP/1.1 connection would be.
        if not self.conns and not self.n_pending and not self.closed:
            self.closed = True
            try:
                self.connector.sessions.remove(self)
            except ValueError:
                pass
            if self.transport is not None:
                self.transport.close()


class H2Protocol(H2Session, asyncio.Protocol):
    pass


cdef class H2Base(Connector):
    """What the sessions read of their connector (declared in _h2.pxd); the connector that
    opens sockets and attaches streams is crestline._h2connector.H2."""
