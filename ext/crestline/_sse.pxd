# Server-Sent Events token scanner: one per connection, reused for every streamed response.
#
# The transport feeds it the raw body bytes of a `text/event-stream` response as they arrive
# (split anywhere) with the time of each read; it finds the `data:` events and keeps, per
# response, the times and counts the core records when the response completes. Everything per
# event is C: no Python object is made per token.
from libc.stdint cimport int64_t

# What one event is (SseScanner.kinds, test aid).
cdef enum:
    SSE_OTHER = 0       # no token: role-only prelude, usage-only, empty content, finish reason
    SSE_CONTENT = 1     # non-empty `content` (chat) or `text` (completions)
    SSE_REASONING = 2   # non-empty `reasoning_content` or `reasoning`, and no content
    SSE_DONE = 3        # data: [DONE]
    SSE_ERROR = 4       # an `error` object or message in the stream


cdef inline bint is_event_stream(bytes value):
    """A Content-Type value that makes a response a token stream: `text/event-stream` in any
    case, leading blanks and parameters allowed, the name whole (`text/event-streamer` is
    not). One test for every transport's headers, so HTTP/1.1 and HTTP/2 agree on what a
    stream is."""
    cdef const unsigned char* p = value
    cdef Py_ssize_t n = len(value), i = 0, k
    cdef const char* want = b"text/event-stream"
    while i < n and (p[i] == b' ' or p[i] == b'\t'):
        i += 1
    if n - i < 17:
        return False
    for k in range(17):
        # ASCII lower-casing: 'A'..'Z' only (the '-' and '/' compare as they are)
        if (p[i + k] | 0x20 if b'A' <= p[i + k] <= b'Z' else p[i + k]) != want[k]:
            return False
    # a longer name (`text/event-streamer`) is another type: only parameters may follow
    i += 17
    return i == n or p[i] == b';' or p[i] == b' ' or p[i] == b'\t'


cdef class SseScanner:
    # line parser state (carried across reads)
    cdef int state
    cdef int field_pos
    cdef bint has_data
    cdef bint skip_lf
    # the current event's data (all its data lines, joined by \n)
    cdef unsigned char* buf
    cdef Py_ssize_t n
    cdef Py_ssize_t cap
    # inter-token gaps of the response, ns (recorded by the core only if it succeeds)
    cdef int64_t* gaps
    cdef Py_ssize_t n_gaps
    cdef Py_ssize_t gaps_cap

    # this response (reset by start())
    cdef readonly bint active               # the response being read is a token stream
    cdef readonly int64_t first_token_ns    # first content or reasoning event (0: none yet)
    cdef readonly int64_t last_token_ns
    cdef readonly int64_t content_events
    cdef readonly int64_t reasoning_events
    cdef readonly int64_t other_events
    cdef readonly int64_t usage_completion_tokens   # from `usage`; -1: none seen
    cdef readonly int64_t usage_prompt_tokens
    cdef readonly bint done                 # [DONE] seen
    cdef readonly bint error                # an error event seen
    cdef readonly int64_t bytes_dropped     # data past MAX_EVENT_BYTES in one event
    cdef readonly int64_t gaps_dropped      # gaps past MAX_GAPS in one response
    cdef list kinds                         # test aid: every event's kind, or None

    cdef void start(self) noexcept
    cdef int feed(self, const unsigned char* p, Py_ssize_t n, int64_t now_ns) except -1
    cdef int finish(self, int64_t now_ns) except -1
    cdef int _append(self, const unsigned char* p, Py_ssize_t k) except -1
    cdef int _dispatch(self, int64_t now_ns) except -1
    cdef int _token(self, int64_t now_ns) except -1
