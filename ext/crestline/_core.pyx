"""The per-request engine: open-loop scheduler, connection pool, HDR recording.

Everything done once per request lives here; everything done once per interval or per stage
lives in Python (crestline.engine.stage). Times are CLOCK_MONOTONIC int64 nanoseconds.

The scheduler is a timerfd armed at the next intended send time (TFD_TIMER_ABSTIME, ns) and
registered with the event loop; every wake sends all slots that are due. Re-arming with
timerfd_settime also clears the fd's readiness, so no read() is needed per wake. uvloop's own
timers round to whole milliseconds and may fire early; the timerfd does neither.

Connections are reached only through the transport seam (crestline._seam): the core keeps the
books (queue, in-flight, timeouts, recorders) and a transport speaks the wire protocol.
"""
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from posix.time cimport itimerspec
from posix.unistd cimport close

from crestline._clock cimport now_ns
from crestline._hdr cimport HdrRecorder
from crestline._sse cimport SseScanner
from crestline._seam cimport (CONN_BUSY, CONN_DEAD, CONN_IDLE, ERR_READ, ERR_TIMEOUT, N_ERR,
                              OUTCOME_OK, Conn, Connector, Owner)

from crestline._http1 import Http1
from crestline.measure.result import ERROR_KINDS


cdef extern from "<sys/timerfd.h>" nogil:
    int timerfd_create(int clockid, int flags)
    int timerfd_settime(int fd, int flags, const itimerspec* new_value, itimerspec* old_value)
    int TFD_NONBLOCK
    int TFD_CLOEXEC
    int TFD_TIMER_ABSTIME

cdef extern from "<time.h>" nogil:
    int CLOCK_MONOTONIC


# The names are the pure layer's; the seam's enum indexes them.
assert len(ERROR_KINDS) == N_ERR, (ERROR_KINDS, N_ERR)

# First messages kept per error kind per interval (the Python layer keeps the run's first few).
cdef enum:
    MESSAGES_PER_KIND = 3


def monotonic_ns():
    """The engine's clock (CLOCK_MONOTONIC, int64 ns)."""
    return now_ns()


cdef class Core(Owner):
    """Drives one stream of requests at one target from one event loop.

    Constructed once per engine; `start()` begins a stage (a schedule of intended send times),
    and connections stay warm across stages.
    """
    cdef object loop
    cdef Connector connector
    cdef list payloads
    cdef int max_conns
    cdef int n_open
    cdef int n_connecting
    cdef int64_t max_inflight
    cdef int64_t timeout_ns
    cdef bint precise
    cdef int64_t spin_ns
    cdef int64_t batch_ns
    cdef int64_t last_wake_ns
    cdef list conns
    cdef list idle
    cdef bint closed

    # queue of slots waiting for a connection: intended time and payload index
    cdef int64_t* q_t
    cdef int32_t* q_p
    cdef int64_t q_head
    cdef int64_t q_len
    cdef int64_t q_cap
    cdef int64_t n_busy

    # schedule
    cdef object chunk_src
    cdef object _off_ref
    cdef object _pidx_ref
    cdef const int64_t[::1] off
    cdef const int32_t[::1] pidx
    cdef bint has_pidx
    cdef Py_ssize_t pos
    cdef Py_ssize_t n
    cdef int64_t base_ns
    cdef int64_t end_ns
    cdef readonly bint scheduling
    cdef int tfd
    cdef bint spin_pending
    cdef object sweep_handle
    cdef double sweep_s

    # multi-turn conversations: per payload the next turn's payload (-1: the last turn) and
    # its think time; a turn that ends puts its successor on a min-heap of follow-ups due at
    # its end + the think time, which the scheduler merges with the schedule's own slots
    cdef object _turn_refs
    cdef const int32_t[::1] next_p
    cdef const int64_t[::1] think_ns
    cdef bint has_turns
    cdef int64_t* f_t
    cdef int32_t* f_p
    cdef Py_ssize_t f_len
    cdef Py_ssize_t f_cap

    # per-class latency: two families of classes (e.g. by model, by payload size), each a
    # class index per payload and one recorder per class
    cdef object _cls_refs
    cdef const int32_t[::1] cls_a
    cdef const int32_t[::1] cls_b
    cdef bint has_cls
    cdef list rec_a
    cdef list rec_b
    # ... and each class's stream TTFT and TPOT, for the streams that succeeded
    cdef list ttft_a
    cdef list ttft_b
    cdef list tpot_a
    cdef list tpot_b

    cdef HdrRecorder lat
    cdef HdrRecorder svc
    cdef HdrRecorder lag
    cdef HdrRecorder sched
    # connection set-up, apart from request latency: TCP connect and TLS handshake
    cdef HdrRecorder setup_tcp
    cdef HdrRecorder setup_tls

    # token streams (SSE responses), recorded at conn_done for the ones that succeeded
    cdef HdrRecorder ttft           # first token from the intended send time
    cdef HdrRecorder ttft_sent      # first token from the actual send
    cdef HdrRecorder itl            # every gap between token events
    cdef HdrRecorder tpot           # per request: (last token - first) / (tokens - 1)
    cdef HdrRecorder e2e            # per request: end of the stream from the intended time
    cdef HdrRecorder out_tokens     # per request: output tokens (a count, not ns)
    # per-request SLO bounds for goodput, ns (0: no bound of that kind)
    cdef int64_t good_ttft_ns
    cdef int64_t good_tpot_ns
    cdef int64_t good_e2e_ns
    cdef int64_t c_streams          # streamed responses that succeeded
    cdef int64_t c_good             # ... and met every per-request bound
    cdef int64_t c_tokens           # output tokens (the server's usage, else token events)
    cdef int64_t c_reasoning        # reasoning token events
    cdef int64_t c_no_token         # succeeded with no token event
    cdef int64_t c_no_done          # ended without data: [DONE]
    cdef int64_t c_usage            # carried usage.completion_tokens
    cdef int64_t c_usage_mismatch   # ... that differs from the token events counted

    # interval counters
    cdef int64_t c_scheduled
    cdef int64_t c_sent
    cdef int64_t c_completed
    cdef int64_t c_ok
    cdef int64_t c_shed
    cdef int64_t c_err[N_ERR]
    cdef int c_msgs[N_ERR]
    cdef list messages

    def __cinit__(self):
        self.q_t = NULL
        self.q_p = NULL
        self.f_t = NULL
        self.f_p = NULL
        self.tfd = -1

    def __init__(self, loop, str host, int port, list payloads, dict layout, *,
                 int connections, int64_t max_inflight, double timeout_s,
                 double connect_timeout_s=5.0, bint precise=False, double spin_us=200.0,
                 double batch_window_us=0.0, classes=None, transport=None, stream_slo=None,
                 turns=None):
        """transport: called as transport(loop, host, port, connect_timeout_s) for the
        Connector of this target (default plain HTTP/1.1, crestline._http1.Http1).
        stream_slo: per-request bounds (ttft_ns, tpot_ns, e2e_ns) a streamed response must
        meet to count as good (goodput); 0 or None: no bound of that kind.
        turns: (int32 next payload per payload, -1 for none; int64 think ns per payload) for
        multi-turn conversations: the schedule sends first turns, and each turn that ends
        (answered or failed) brings its successor at its end + the successor's think time,
        within the stage's window."""
        if not payloads:
            raise ValueError("at least one payload is needed")
        connector = (Http1 if transport is None else transport)(
            loop, host, port, connect_timeout_s)
        if not isinstance(connector, Connector):
            raise TypeError(f"transport must make a crestline._seam.Connector, not {connector!r}")
        self.connector = connector
        self.loop = loop
        self.payloads = [bytes(p) for p in payloads]
        self.max_conns = connections
        self.max_inflight = max_inflight
        self.timeout_ns = <int64_t>(timeout_s * 1e9)
        self.precise = precise
        self.spin_ns = <int64_t>(spin_us * 1e3)
        self.batch_ns = <int64_t>(batch_window_us * 1e3)
        self.conns = []
        self.idle = []
        self.q_cap = max_inflight
        self.q_t = <int64_t*>malloc(self.q_cap * sizeof(int64_t))
        self.q_p = <int32_t*>malloc(self.q_cap * sizeof(int32_t))
        if self.q_t == NULL or self.q_p == NULL:
            raise MemoryError()
        self.lat = HdrRecorder(**layout)
        self.svc = HdrRecorder(**layout)
        self.lag = HdrRecorder(**layout)
        self.sched = HdrRecorder(**layout)
        self.setup_tcp = HdrRecorder(**layout)
        self.setup_tls = HdrRecorder(**layout)
        self.ttft = HdrRecorder(**layout)
        self.ttft_sent = HdrRecorder(**layout)
        self.itl = HdrRecorder(**layout)
        self.tpot = HdrRecorder(**layout)
        self.e2e = HdrRecorder(**layout)
        self.out_tokens = HdrRecorder(**layout)
        if stream_slo is not None:
            self.good_ttft_ns, self.good_tpot_ns, self.good_e2e_ns = (
                int(b or 0) for b in stream_slo)
        self.messages = []
        self.rec_a = []
        self.rec_b = []
        if classes is not None:
            # classes: (int32 class per payload, n classes) for each of the two families
            (a, n_a), (b, n_b) = classes
            self._cls_refs = (a, b)
            self.cls_a = a
            self.cls_b = b
            self.rec_a = [HdrRecorder(**layout) for _ in range(n_a)]
            self.rec_b = [HdrRecorder(**layout) for _ in range(n_b)]
            self.ttft_a = [HdrRecorder(**layout) for _ in range(n_a)]
            self.ttft_b = [HdrRecorder(**layout) for _ in range(n_b)]
            self.tpot_a = [HdrRecorder(**layout) for _ in range(n_a)]
            self.tpot_b = [HdrRecorder(**layout) for _ in range(n_b)]
            self.has_cls = True
        if turns is not None:
            nxt, think = turns
            self._turn_refs = (nxt, think)
            self.next_p = nxt
            self.think_ns = think
            self.has_turns = True
            self.f_cap = 1024
            self.f_t = <int64_t*>malloc(self.f_cap * sizeof(int64_t))
            self.f_p = <int32_t*>malloc(self.f_cap * sizeof(int32_t))
            if self.f_t == NULL or self.f_p == NULL:
                raise MemoryError()
        self._reset_counters()
        self.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if self.tfd < 0:
            raise OSError("timerfd_create failed")
        loop.add_reader(self.tfd, self._on_timer)
        # Timeouts are checked by a sweep, a tenth of the timeout apart, kept within 10-100 ms:
        # a failure found within 10% of its time is soon enough, and each sweep is a wake-up
        # of the loop (at 10 ms apart they were most of an idle client's CPU: ~15 ms a second).
        self.sweep_s = min(max(timeout_s / 10.0, 0.01), 0.1)
        self.sweep_handle = loop.call_later(self.sweep_s, self._on_sweep)

    def __dealloc__(self):
        free(self.q_t)
        free(self.q_p)
        free(self.f_t)
        free(self.f_p)
        if self.tfd >= 0:
            close(self.tfd)

    # -- stage control (Python, once per stage) ---------------------------------------------
    def start(self, int64_t base_ns, int64_t end_ns, chunk_src):
        """Begin a stage: slots at base_ns + offset for offsets from chunk_src() while < end_ns.

        chunk_src() returns (int64 offsets ns, int32 payload indices or None), or None when the
        schedule is exhausted.
        """
        if self.closed:
            raise RuntimeError("engine is closed")
        self.base_ns = base_ns
        self.end_ns = end_ns
        self.chunk_src = chunk_src
        self.pos = 0
        self.n = 0
        self.f_len = 0  # conversations do not carry over from an earlier stage
        self.scheduling = True
        self._next_chunk()
        self._tick()

    def pump(self):
        """Send whatever is due now (used right before an interval boundary is read)."""
        if self.scheduling:
            self._tick()

    def stop(self):
        """Stop scheduling (requests already in flight continue)."""
        self._schedule_done()

    def take_interval(self):
        """Counters and histograms since the last call; resets them.

        Returns (counters dict, latency, service, send_lag, schedule_lag) where each histogram
        is HdrRecorder.take()'s tuple; counters["setup"] holds the connections' set-up times
        (TCP connect, TLS handshake) as two more takes.
        """
        errs = {ERROR_KINDS[i]: self.c_err[i] for i in range(N_ERR)}
        counters = {
            "scheduled": self.c_scheduled,
            "sent": self.c_sent,
            "completed": self.c_completed,
            "ok": self.c_ok,
            "shed": self.c_shed,
            "by_error": errs,
            "inflight": self.n_busy + self.q_len,
            "queued": self.q_len,
            "connections": self.n_open,
            "messages": self.messages,
            "setup": (self.setup_tcp.take(), self.setup_tls.take()),
            "stream": self._take_stream(),
        }
        if self.has_cls:
            counters["classes"] = ([r.take() for r in self.rec_a], [r.take() for r in self.rec_b])
            # per class: stream TTFT (both families), then TPOT (both families)
            counters["stream_classes"] = tuple([r.take() for r in rs] for rs in (
                self.ttft_a, self.ttft_b, self.tpot_a, self.tpot_b))
        self.messages = []
        self._reset_counters()
        return (counters, self.lat.take(), self.svc.take(), self.lag.take(), self.sched.take())

    cdef dict _take_stream(self):
        return {
            "streams": self.c_streams, "good": self.c_good, "tokens": self.c_tokens,
            "reasoning_tokens": self.c_reasoning, "no_token": self.c_no_token,
            "no_done": self.c_no_done, "usage": self.c_usage,
            "usage_mismatch": self.c_usage_mismatch,
            "hists": (self.ttft.take(), self.ttft_sent.take(), self.itl.take(),
                      self.tpot.take(), self.e2e.take(), self.out_tokens.take()),
        }

    @property
    def inflight(self):
        return self.n_busy + self.q_len

    def preopen(self, int n):
        """Start opening connections until n are open or opening (at most --connections),
        before any request needs one; each is idle once up, its set-up time recorded as
        usual. For TLS: opened on demand, every handshake (CPU on this loop) would land in
        the first interval's schedule and show as the client's lag. Returns how many it
        started; `connecting` says how many are still on their way."""
        cdef int started = 0
        while (not self.closed
               and self.n_open + self.n_connecting < min(n, self.max_conns)):
            self.n_connecting += 1
            started += 1
            self.connector.open(self)
        return started

    @property
    def connecting(self):
        return self.n_connecting

    @property
    def open_connections(self):
        return self.n_open

    def abandon(self, str why):
        """Fail every queued and outstanding request as a timeout (the run is ending)."""
        cdef Conn conn
        while self.q_len:
            self._dequeue()
            self._error(ERR_TIMEOUT, why)
        for conn in list(self.conns):
            if conn.state == CONN_BUSY:
                self.conn_error(conn, ERR_TIMEOUT, why)

    def close(self):
        """Stop everything and close every connection."""
        cdef Conn conn
        if self.closed:
            return
        self._schedule_done()
        self.closed = True
        if self.sweep_handle is not None:
            self.sweep_handle.cancel()
            self.sweep_handle = None
        self.loop.remove_reader(self.tfd)
        for conn in list(self.conns):
            conn.state = CONN_DEAD
            conn.close()
        self.idle = []

    # -- scheduler ----------------------------------------------------------------------------
    def _on_timer(self):
        self.spin_pending = False
        self._tick()

    cdef void _arm(self, int64_t at_ns) noexcept:
        cdef itimerspec its
        its.it_interval.tv_sec = 0
        its.it_interval.tv_nsec = 0
        its.it_value.tv_sec = at_ns // 1000000000
        its.it_value.tv_nsec = at_ns % 1000000000
        timerfd_settime(self.tfd, TFD_TIMER_ABSTIME, &its, NULL)

    cdef void _disarm(self) noexcept:
        cdef itimerspec its
        its.it_interval.tv_sec = 0
        its.it_interval.tv_nsec = 0
        its.it_value.tv_sec = 0
        its.it_value.tv_nsec = 0
        timerfd_settime(self.tfd, 0, &its, NULL)

    cdef _tick(self):
        cdef int64_t now, t
        if not self.scheduling:
            return
        now = now_ns()
        self.last_wake_ns = now
        if self.has_turns:
            self._tick_turns(now)
            return
        while self.pos < self.n:
            t = self.base_ns + self.off[self.pos]
            if t >= self.end_ns:
                self._schedule_done()
                return
            if t > now:
                self._wait_until(t, now)
                return
            self._dispatch_slot(t, now)
            now = now_ns()
        self._schedule_done()

    cdef inline _dispatch_slot(self, int64_t t, int64_t now):
        """Send the schedule's next slot (due at t), and load the next chunk after its last."""
        cdef int32_t p = self.pidx[self.pos] if self.has_pidx else 0
        self.pos += 1
        self._dispatch(t, p, now)
        if self.pos >= self.n:
            self._next_chunk()

    cdef _wait_until(self, int64_t t, int64_t now):
        """Wake for the next slot at t (> now), no earlier than a batch window after the last
        wake."""
        if self.precise and t - now <= self.spin_ns:
            # Close enough to spin: keep the loop turning (I/O still runs between turns)
            # instead of sleeping past the slot.
            self._disarm()
            if not self.spin_pending:
                self.spin_pending = True
                self.loop.call_soon(self._on_timer)
        else:
            self._arm(t if t - self.last_wake_ns >= self.batch_ns
                      else self.last_wake_ns + self.batch_ns)

    cdef _tick_turns(self, int64_t now):
        """_tick with conversations: the schedule's slots and the follow-up heap, merged in
        time order. The stage keeps scheduling until its end even when the schedule runs out,
        since turns in flight still bring follow-ups."""
        cdef int64_t t, t_slot, t_f
        cdef int32_t p
        cdef int64_t never = 0x7FFFFFFFFFFFFFFF
        while True:
            t_slot = never
            if self.pos < self.n:
                t_slot = self.base_ns + self.off[self.pos]
                if t_slot >= self.end_ns:
                    self.chunk_src = None
                    self.n = 0
                    self.pos = 0
                    t_slot = never
            t_f = self.f_t[0] if self.f_len else never
            t = t_slot if t_slot < t_f else t_f
            if t == never:
                self._disarm()
                return
            if t > now:
                self._wait_until(t, now)
                return
            if t_f <= t_slot:
                p = self._pop_followup()
                self._dispatch(t_f, p, now)
            else:
                self._dispatch_slot(t_slot, now)
            now = now_ns()

    cdef void _turn_ended(self, int32_t p, int64_t now) noexcept:
        """A turn ended: its successor (if any) is due at now + its think time, if that is
        within the stage; the timer is re-armed when it is the earliest."""
        cdef int32_t q
        cdef int64_t t, t_slot
        if not self.has_turns or not self.scheduling:
            return
        q = self.next_p[p]
        if q < 0:
            return
        t = now + self.think_ns[q]
        if t >= self.end_ns:
            return
        if self.f_len == self.f_cap and not self._grow_followups():
            return
        self._push_followup(t, q)
        if self.f_t[0] == t and not self.spin_pending:
            # the earliest follow-up now: wake for it, or for the schedule's next slot first
            if self.pos < self.n:
                t_slot = self.base_ns + self.off[self.pos]
                if t_slot < t:
                    t = t_slot
            self._arm(t)

    cdef bint _grow_followups(self) noexcept:
        cdef Py_ssize_t cap = self.f_cap * 2
        cdef int64_t* nt = <int64_t*>realloc(self.f_t, cap * sizeof(int64_t))
        cdef int32_t* np_
        if nt == NULL:
            return False
        self.f_t = nt
        np_ = <int32_t*>realloc(self.f_p, cap * sizeof(int32_t))
        if np_ == NULL:
            return False
        self.f_p = np_
        self.f_cap = cap
        return True

    cdef void _push_followup(self, int64_t t, int32_t p) noexcept:
        cdef Py_ssize_t i = self.f_len, parent
        self.f_len += 1
        while i > 0:
            parent = (i - 1) // 2
            if self.f_t[parent] <= t:
                break
            self.f_t[i] = self.f_t[parent]
            self.f_p[i] = self.f_p[parent]
            i = parent
        self.f_t[i] = t
        self.f_p[i] = p

    cdef int32_t _pop_followup(self) noexcept:
        cdef int32_t top = self.f_p[0]
        cdef int64_t t
        cdef int32_t p
        cdef Py_ssize_t i = 0, child
        self.f_len -= 1
        if self.f_len == 0:
            return top
        t = self.f_t[self.f_len]
        p = self.f_p[self.f_len]
        while True:
            child = 2 * i + 1
            if child >= self.f_len:
                break
            if child + 1 < self.f_len and self.f_t[child + 1] < self.f_t[child]:
                child += 1
            if self.f_t[child] >= t:
                break
            self.f_t[i] = self.f_t[child]
            self.f_p[i] = self.f_p[child]
            i = child
        self.f_t[i] = t
        self.f_p[i] = p
        return top

    cdef _next_chunk(self):
        src = self.chunk_src
        chunk = src() if src is not None else None
        if chunk is None:
            self.n = 0
            self.pos = 0
            return
        offsets, pidx = chunk
        self._off_ref = offsets
        self.off = offsets
        self.has_pidx = pidx is not None
        if self.has_pidx:
            self._pidx_ref = pidx
            self.pidx = pidx
        self.n = offsets.shape[0]
        self.pos = 0

    cdef void _schedule_done(self) noexcept:
        self.scheduling = False
        self.chunk_src = None
        self.n = 0
        self.pos = 0
        if self.tfd >= 0 and not self.closed:
            self._disarm()

    cdef _dispatch(self, int64_t t, int32_t p, int64_t now):
        cdef Conn conn
        self.c_scheduled += 1
        self.sched.record(now - t)
        if self.n_busy + self.q_len >= self.max_inflight:
            self.c_shed += 1
            return
        if self.idle:
            conn = self.idle.pop()
            self._send(conn, t, p)
        else:
            self._enqueue(t, p)
            self._maybe_connect()

    cdef _send(self, Conn conn, int64_t t, int32_t p):
        conn.state = CONN_BUSY
        conn.intended_ns = t
        conn.pidx = p
        conn.sent_ns = now_ns()
        self.lag.record(conn.sent_ns - t)
        self.n_busy += 1
        self.c_sent += 1
        conn.send(self.payloads[p])

    # -- queue --------------------------------------------------------------------------------
    cdef inline void _enqueue(self, int64_t t, int32_t p) noexcept:
        cdef int64_t i = (self.q_head + self.q_len) % self.q_cap
        self.q_t[i] = t
        self.q_p[i] = p
        self.q_len += 1

    cdef inline void _dequeue(self) noexcept:
        self.q_head = (self.q_head + 1) % self.q_cap
        self.q_len -= 1

    # -- connections ---------------------------------------------------------------------------
    cdef _maybe_connect(self):
        while (not self.closed and self.q_len > self.n_connecting
               and self.n_open + self.n_connecting < self.max_conns):
            self.n_connecting += 1
            self.connector.open(self)

    # -- the seam's callbacks (Owner) ---------------------------------------------------------
    cdef conn_failed(self, int kind, str why):
        self.n_connecting -= 1
        if why is None:
            return
        # One failed attempt fails the request that has waited longest for it.
        if self.q_len:
            self._dequeue()
            self._error(kind, why)
        self._maybe_connect()

    cdef conn_setup(self, int64_t connect_ns, int64_t handshake_ns):
        self.setup_tcp.record(connect_ns)
        if handshake_ns >= 0:
            self.setup_tls.record(handshake_ns)

    cdef conn_made(self, Conn conn):
        self.n_connecting -= 1
        if self.closed:
            conn.state = CONN_DEAD
            conn.close()
            return
        self.n_open += 1
        self.conns.append(conn)
        self._release(conn)

    cdef _release(self, Conn conn):
        cdef int64_t t
        cdef int32_t p
        if self.q_len:
            t = self.q_t[self.q_head]
            p = self.q_p[self.q_head]
            self._dequeue()
            self._send(conn, t, p)
        else:
            conn.state = CONN_IDLE
            self.idle.append(conn)

    cdef conn_done(self, Conn conn, int64_t now, int outcome, int status, bint reuse):
        cdef int64_t latency_ns
        if conn.state != CONN_BUSY:
            return
        latency_ns = now - conn.intended_ns
        self.lat.record(latency_ns)
        self.svc.record(now - conn.sent_ns)
        if self.has_cls:
            (<HdrRecorder>self.rec_a[self.cls_a[conn.pidx]]).record(latency_ns)
            (<HdrRecorder>self.rec_b[self.cls_b[conn.pidx]]).record(latency_ns)
        self.c_completed += 1
        self.n_busy -= 1
        self._turn_ended(conn.pidx, now)
        if outcome == OUTCOME_OK:
            self.c_ok += 1
            if conn.sse is not None and conn.sse.active:
                self._stream_done(conn, conn.sse, now)
        else:
            self._error(outcome, None, status, conn)
        if reuse and not self.closed:
            self._release(conn)
        else:
            conn.state = CONN_DEAD
            conn.close()

    cdef void _stream_done(self, Conn conn, SseScanner s, int64_t now) noexcept:
        """Record a streamed response that succeeded (a failed one counts as an error only,
        so it never pulls TTFT or ITL down)."""
        cdef int64_t events = s.content_events + s.reasoning_events
        cdef int64_t tokens, first, tpot_ns = 0, e2e_ns = now - conn.intended_ns
        cdef Py_ssize_t i
        self.c_streams += 1
        self.c_reasoning += s.reasoning_events
        if not s.done:
            self.c_no_done += 1
        tokens = events
        if s.usage_completion_tokens >= 0:
            self.c_usage += 1
            if s.usage_completion_tokens != events:
                self.c_usage_mismatch += 1
            tokens = s.usage_completion_tokens
        self.c_tokens += tokens
        self.out_tokens.record(tokens)
        self.e2e.record(e2e_ns)
        first = s.first_token_ns
        if first == 0:
            self.c_no_token += 1
            return
        self.ttft.record(first - conn.intended_ns)
        self.ttft_sent.record(first - conn.sent_ns)
        if self.has_cls:
            (<HdrRecorder>self.ttft_a[self.cls_a[conn.pidx]]).record(first - conn.intended_ns)
            (<HdrRecorder>self.ttft_b[self.cls_b[conn.pidx]]).record(first - conn.intended_ns)
        for i in range(s.n_gaps):
            self.itl.record(s.gaps[i])
        if tokens > 1:
            tpot_ns = (s.last_token_ns - first) // (tokens - 1)
            self.tpot.record(tpot_ns)
            if self.has_cls:
                (<HdrRecorder>self.tpot_a[self.cls_a[conn.pidx]]).record(tpot_ns)
                (<HdrRecorder>self.tpot_b[self.cls_b[conn.pidx]]).record(tpot_ns)
        if ((self.good_ttft_ns == 0 or first - conn.intended_ns <= self.good_ttft_ns)
                and (self.good_tpot_ns == 0 or tpot_ns <= self.good_tpot_ns)
                and (self.good_e2e_ns == 0 or e2e_ns <= self.good_e2e_ns)):
            self.c_good += 1

    cdef conn_error(self, Conn conn, int kind, str why):
        if conn.state == CONN_BUSY:
            self.n_busy -= 1
            self._turn_ended(conn.pidx, now_ns())
            self._error(kind, why)
        elif conn.state == CONN_IDLE:
            self.idle.remove(conn)
        conn.state = CONN_DEAD
        conn.abort()

    cdef conn_lost(self, Conn conn, object exc):
        if conn.state == CONN_BUSY:
            self.n_busy -= 1
            self._turn_ended(conn.pidx, now_ns())
            if exc is None:
                self._error(ERR_READ, "server closed the connection before the response completed")
            else:
                self._error(ERR_READ, f"connection lost: {exc!r}")
        elif conn.state == CONN_IDLE:
            self.idle.remove(conn)
        conn.state = CONN_DEAD
        try:
            self.conns.remove(conn)
        except ValueError:
            pass
        else:
            self.n_open -= 1
        self._maybe_connect()

    def _on_sweep(self):
        cdef Conn conn
        cdef int64_t now = now_ns()
        if self.closed:
            return
        if self.n_busy:  # with nothing outstanding there is nothing to time out
            for conn in list(self.conns):
                if conn.state == CONN_BUSY and now - conn.sent_ns > self.timeout_ns:
                    self.conn_error(conn, ERR_TIMEOUT,
                                    f"no complete response within {self.timeout_ns / 1e9:g} s")
        self.sweep_handle = self.loop.call_later(self.sweep_s, self._on_sweep)

    # -- counters ------------------------------------------------------------------------------
    cdef void _reset_counters(self) noexcept:
        cdef int i
        self.c_scheduled = 0
        self.c_sent = 0
        self.c_completed = 0
        self.c_ok = 0
        self.c_shed = 0
        self.c_streams = 0
        self.c_good = 0
        self.c_tokens = 0
        self.c_reasoning = 0
        self.c_no_token = 0
        self.c_no_done = 0
        self.c_usage = 0
        self.c_usage_mismatch = 0
        for i in range(N_ERR):
            self.c_err[i] = 0
            self.c_msgs[i] = 0

    cdef _error(self, int kind, str why, int status=0, Conn conn=None):
        """Count one failed request; why None: the message is conn's text for status."""
        self.c_err[kind] += 1
        if self.c_msgs[kind] < MESSAGES_PER_KIND:
            self.c_msgs[kind] += 1
            self.messages.append((ERROR_KINDS[kind],
                                  why if why is not None else conn.status_message(status)))
