# HTTP/2 (and gRPC over it) behind the transport seam (crestline._seam): one H2Session per
# socket, one H2Stream Conn per concurrent stream it carries.
from libc.stdint cimport int32_t, int64_t

from crestline._hpack cimport HpackDecoder
from crestline._seam cimport Conn, Connector, Owner


cdef class H2Session


cdef class H2Stream(Conn):
    cdef H2Session session
    cdef bint attached      # in session.conns; cleared once conn_lost has been said
    cdef int32_t sid        # the stream of the request outstanding (0: none)
    cdef bytearray frames   # the request's frames, stream id patched in
    cdef Py_ssize_t pos     # first byte of `frames` not yet written (DATA waiting for window)
    cdef int64_t window     # this stream's send window
    cdef int status         # :status of the response (0: no headers yet)
    cdef int grpc_status    # grpc-status of the response (-1: none seen)
    cdef object grpc_message

    cdef _reset(self)


cdef class H2Base


cdef class H2Session:
    cdef H2Base connector
    cdef Owner owner
    cdef object transport
    cdef object write
    cdef HpackDecoder decoder   # the server's header blocks, every one in order
    cdef bytes rest             # bytes of an incomplete frame
    cdef dict streams           # stream id -> H2Stream with a request outstanding
    cdef list conns             # attached H2Streams
    cdef int n_pending          # opens promised to the owner, waiting for the server's SETTINGS
    cdef list blocked           # H2Streams with DATA waiting for send window
    cdef int64_t conn_window    # connection send window
    cdef int64_t peer_initial_window
    cdef int64_t peer_max_streams
    cdef int64_t recv_unacked   # DATA bytes received since the last connection WINDOW_UPDATE
    cdef int32_t next_sid
    cdef int32_t cont_sid       # the stream a CONTINUATION must follow for (0: none)
    cdef bytearray cont_block   # the header block arriving in HEADERS + CONTINUATION frames
    cdef bint cont_end          # its HEADERS had END_STREAM
    cdef bint ready             # the server's first SETTINGS arrived
    cdef bint accepting         # new streams may start (no GOAWAY, ids left)
    cdef bint closed
    cdef int64_t read_ns        # when the bytes being parsed arrived: token events' time
    cdef object settings_timer
    cdef public int64_t tcp_ns
    cdef public int64_t up_ns

    cdef int limit(self)
    cdef bint can_take(self)
    cdef _attach_ready(self)
    cdef _fail_pending(self, int kind, str why)
    cdef _send_frame(self, int ftype, int flags, int32_t sid, bytes payload)
    cdef _push(self, H2Stream st)
    cdef _flush_blocked(self)
    cdef _frame(self, int ftype, int flags, int32_t sid, bytes data, Py_ssize_t off,
                Py_ssize_t ln)
    cdef _on_headers(self, int flags, int32_t sid, bytes data, Py_ssize_t off, Py_ssize_t ln)
    cdef _header_block(self, int32_t sid, bytes block, bint end_stream)
    cdef _on_data(self, int flags, int32_t sid, bytes data, Py_ssize_t off, Py_ssize_t ln)
    cdef _on_settings(self, int flags, bytes data, Py_ssize_t off, Py_ssize_t ln)
    cdef _on_goaway(self, bytes data, Py_ssize_t off)
    cdef _complete(self, H2Stream st)
    cdef _stream_failed(self, H2Stream st, int kind, str why)
    cdef _connection_error(self, int code, str why)
    cdef _detach(self, H2Stream st, bint reset)
    cdef _maybe_close(self)


# The sessions' connector: its settings and sessions (crestline._h2connector.H2 opens them).
cdef class H2Base(Connector):
    cdef object loop
    cdef str host
    cdef int port
    cdef double connect_timeout_s
    cdef object ssl
    cdef object server_hostname
    cdef int streams
    cdef bint grpc
    cdef list sessions
    cdef object addr
