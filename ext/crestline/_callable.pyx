"""A callable transport: the user's `async def call(payload) -> status` as the wire.

For protocols crestline does not speak natively. The scheduler, queue, in-flight bound,
timeout sweep and recorders are the core's, unchanged: each Conn is one concurrent call slot
(`--connections` bounds how many calls are outstanding), `send` starts the coroutine as a task
on the engine's loop and its completion is stamped with the same clock as every HTTP response.
The slower path: a task and a Python coroutine per request, where HTTP/1.1 runs none.

The status a call returns: None or an int below 400 is ok; 400-499 and 500 and above count as
http_4xx and http_5xx (any other code also as http_5xx); an exception raised by the call fails
the request as `read` with its text, and that call slot is replaced by a fresh one.
"""
from libc.stdint cimport int64_t

from crestline._clock cimport now_ns
from crestline._seam cimport (CONN_BUSY, CONN_DEAD, CONN_NEW, ERR_HTTP_4XX, ERR_HTTP_5XX,
                              ERR_PROTOCOL, ERR_READ, OUTCOME_OK, Conn, Connector, Owner)


cdef class CallableConn(Conn):
    cdef object call
    cdef object loop
    cdef object task
    cdef bint closing
    cdef bint lost

    def __init__(self, Owner owner, call, loop):
        self.owner = owner
        self.call = call
        self.loop = loop
        self.state = CONN_NEW
        self.task = None

    # -- the seam ---------------------------------------------------------------------------
    cdef send(self, object payload):
        self.task = self.loop.create_task(self.call(payload))
        self.task.add_done_callback(self._done)

    cdef close(self):
        # After the current call (if any); a free slot goes at once.
        self.closing = True
        if self.task is None or self.task.done():
            self.loop.call_soon(self._lose, None)

    cdef abort(self):
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.loop.call_soon(self._lose, None)

    cdef str status_message(self, int status):
        return f"call returned status {status}"

    # -- the call's completion --------------------------------------------------------------
    def _done(self, task):
        cdef int64_t t = now_ns()
        cdef int status
        self.task = None
        if task.cancelled() or self.lost or self.state != CONN_BUSY:
            return  # aborted (a timeout, the run's end): the core has counted it already
        exc = task.exception()
        if exc is not None:
            self.owner.conn_error(self, ERR_READ, f"the call raised {exc!r}"[:200])
            return
        result = task.result()
        try:
            status = 200 if result is None else int(result)
        except (TypeError, ValueError, OverflowError):
            self.owner.conn_error(self, ERR_PROTOCOL,
                                  f"the call returned {result!r}, not a status"[:200])
            return
        if status < 400:
            outcome = OUTCOME_OK
        elif status < 500:
            outcome = ERR_HTTP_4XX
        else:
            outcome = ERR_HTTP_5XX
        self.owner.conn_done(self, t, outcome, status, not self.closing)

    def _lose(self, exc):
        if self.lost:
            return
        self.lost = True
        self.state = CONN_DEAD
        self.owner.conn_lost(self, exc)


cdef class CallableConnector(Connector):
    """Opens call slots for a Core: `CallableConnector(loop, host, port, connect_timeout_s,
    call=fn)`, the transport factory's signature (host and port are the call:// URL's and
    unused). A slot is ready on the loop's next turn; nothing is connected."""

    cdef object loop
    cdef object call

    def __init__(self, loop, host, port, connect_timeout_s, *, call):
        if not callable(call):
            raise TypeError(f"call must be an async function, not {call!r}")
        self.loop = loop
        self.call = call

    cdef open(self, Owner owner):
        conn = CallableConn(owner, self.call, self.loop)
        self.loop.call_soon(self._made, conn)

    def _made(self, CallableConn conn):
        conn.owner.conn_made(conn)
