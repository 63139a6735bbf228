# The transport seam: all the scheduler, queue, timeout sweep and recorders know of a connection.
#
# A transport is a Connector (opens connections, per connection, may be Python and async) and
# a Conn subclass (the wire protocol). Per request only C-level calls cross this seam: the core
# calls Conn.send through the vtable, the Conn reports back through Owner's cdef methods.
#
# A Conn is one request channel: at most one request outstanding on it. A transport that
# multiplexes (HTTP/2, gRPC) gives the core one Conn per stream it allows, all sharing one
# socket, so the core's queue and in-flight bound work unchanged. A token stream (SSE) is read
# by the Conn's SseScanner (crestline._sse), which keeps the response's token times and counts;
# the core reads it at conn_done, so a failed stream never reaches the token histograms.
#
# Times are CLOCK_MONOTONIC int64 ns (crestline._clock.now_ns), stamped by whichever side sees
# the event first: the core stamps the write, the transport stamps the response.
from libc.stdint cimport int32_t, int64_t

from crestline._sse cimport SseScanner


# Error kinds: indices into crestline.measure.result.ERROR_KINDS (the names live there only;
# the core checks at import that the counts agree).
cdef enum:
    ERR_CONNECT = 0
    ERR_TIMEOUT = 1
    ERR_READ = 2
    ERR_HTTP_4XX = 3
    ERR_HTTP_5XX = 4
    ERR_PROTOCOL = 5
    ERR_TLS = 6     # a TLS handshake or alert failed (certificate, protocol, mTLS refusal)
    # a gRPC response with grpc-status code c (1..16) is kind ERR_GRPC + c - 1
    ERR_GRPC = 7
    N_ERR = 23

# conn_done's outcome when the response counts as ok (otherwise an error kind above).
cdef enum:
    OUTCOME_OK = -1

# Connection states. The core moves a Conn between IDLE and BUSY; the transport only reads the
# state, except that it marks a Conn DEAD when opening it failed.
cdef enum:
    CONN_NEW = 0    # created, not connected yet
    CONN_IDLE = 1   # connected, no request outstanding
    CONN_BUSY = 2   # one request written, response not complete
    CONN_DEAD = 3   # closing or closed; never reused


cdef class Owner


cdef class Conn:
    cdef Owner owner
    # the core's bookkeeping for the request outstanding on this Conn (valid while BUSY)
    cdef int state
    cdef int64_t intended_ns
    cdef int64_t sent_ns
    cdef int32_t pidx
    # the token stream of the response being read: set by a transport that sees one (active
    # while that response is read, until conn_done returns), else None
    cdef SseScanner sse

    # Write one rendered request (the core set state, times and pidx just before).
    cdef send(self, object payload)
    # Close after the current exchange / drop at once (timeouts, errors). Either ends in
    # exactly one Owner.conn_lost.
    cdef close(self)
    cdef abort(self)
    # Text of an error message for a non-ok status; called only for the few messages kept.
    cdef str status_message(self, int status)


cdef class Owner:
    # What a connection reports; the core implements these.
    # The connection is up and can take a request.
    cdef conn_made(self, Conn conn)
    # An attempt to open a connection failed with this message (None: cancelled, nothing
    # to report); kind ERR_CONNECT (TCP) or ERR_TLS (the handshake). Every Connector.open
    # ends in exactly one conn_made or conn_failed.
    cdef conn_failed(self, int kind, str why)
    # How long the connection just made took to set up: TCP connect, then the TLS handshake
    # (-1: none). Recorded apart from request latency, which never includes set-up time.
    cdef conn_setup(self, int64_t connect_ns, int64_t handshake_ns)
    # The outstanding request completed at now_ns with outcome (OUTCOME_OK or an error kind;
    # status is the protocol's code, for the message); reuse: the Conn can take another.
    cdef conn_done(self, Conn conn, int64_t now_ns, int outcome, int status, bint reuse)
    # The connection broke (kind, why); the owner aborts it.
    cdef conn_error(self, Conn conn, int kind, str why)
    # The connection is gone (exc: the cause, None for a clean close by the peer).
    cdef conn_lost(self, Conn conn, object exc)


cdef class Connector:
    # Start opening one connection for owner; report through owner.conn_made / conn_failed.
    cdef open(self, Owner owner)
