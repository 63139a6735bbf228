"""Server-Sent Events token scanner for OpenAI-style streams (chat and completions).

The transport feeds the body bytes of a `text/event-stream` response as they arrive, split
anywhere (mid-line, mid-`\\r\\n`, several events per read). The line parser follows the
WHATWG SSE rules (lines end in \\n, \\r\\n or \\r; a blank line dispatches the event; `:` starts a
comment; only `data` fields matter here, their lines joined by \\n). Each dispatched event is
classified with byte searches, never by parsing JSON:

- `[DONE]`: the end of an OpenAI stream;
- a non-empty string under `"content"` (chat delta) or `"text"` (completions): a content token
  event; else one under `"reasoning_content"` or `"reasoning"`: a reasoning token event;
- anything else (the role-only first chunk, `"content":""`, a finish-reason chunk, a usage-only
  chunk) is no token;
- `"usage": {..."completion_tokens": N...}` anywhere: the server's token count (the last one
  seen wins, so vLLM's continuous usage works too); an `"error"` object or string: an error.

A key counts only where it is a key: a quote escaped inside a JSON string (`\\"content\\"`) is
not one, and a key is followed by `:`. Times: the caller's `now_ns` of the read that carried
the event, CLOCK_MONOTONIC int64 ns; events in one read share it (their gaps are 0).
"""
from libc.stdint cimport int64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy


cdef extern from "<string.h>" nogil:
    void* memmem(const void* haystack, size_t hlen, const void* needle, size_t nlen)


cdef enum:
    # One event's data is kept up to this size; the rest is dropped and counted (a key that
    # far in goes unseen). OpenAI chunks are a few hundred bytes; logprobs make them a few kB.
    MAX_EVENT_BYTES = 1 << 20
    # Gaps kept per response; past this the rest are dropped and counted (a 1M-token stream).
    MAX_GAPS = 1 << 20

cdef enum:
    S_LINE = 0      # at the start of a line
    S_FIELD = 1     # in a field name (field_pos: bytes of "data" matched so far, -1 other)
    S_SPACE = 2     # just after "data:", where one space is skipped
    S_DATA = 3      # in a data value
    S_SKIP = 4      # in a comment or a field other than data

cdef const char* DATA = b"data"


cdef inline Py_ssize_t _value_at(const unsigned char* s, Py_ssize_t n, const char* key,
                                 Py_ssize_t klen) noexcept nogil:
    """Index of the first byte of the value of the quoted key `key` (quotes included), or -1."""
    cdef Py_ssize_t start = 0, i, j
    cdef const unsigned char* hit
    while start < n:
        hit = <const unsigned char*>memmem(s + start, n - start, key, klen)
        if hit == NULL:
            return -1
        i = hit - s
        j = i + klen
        start = j
        if i > 0 and s[i - 1] == b'\\':
            continue  # an escaped quote inside a string, not a key
        while j < n and (s[j] == b' ' or s[j] == b'\t' or s[j] == b'\n' or s[j] == b'\r'):
            j += 1
        if j >= n or s[j] != b':':
            continue  # a value that happens to read like the key
        j += 1
        while j < n and (s[j] == b' ' or s[j] == b'\t' or s[j] == b'\n' or s[j] == b'\r'):
            j += 1
        return j
    return -1


cdef inline bint _nonempty_str(const unsigned char* s, Py_ssize_t n, const char* key,
                               Py_ssize_t klen) noexcept nogil:
    cdef Py_ssize_t j = _value_at(s, n, key, klen)
    return j >= 0 and j + 1 < n and s[j] == b'"' and s[j + 1] != b'"'


cdef inline int64_t _int_at(const unsigned char* s, Py_ssize_t n, Py_ssize_t j) noexcept nogil:
    """The non-negative integer starting at s[j], or -1."""
    cdef int64_t v = 0
    cdef int digits = 0
    while j < n and digits < 18 and b'0' <= s[j] <= b'9':
        v = v * 10 + (s[j] - 48)  # '0'
        j += 1
        digits += 1
    return v if digits else -1


cdef class SseScanner:
    """Finds the token events of one streamed response at a time (see the module docstring).

    keep_kinds: also keep every event's kind in a list (tests only: that is Python work).
    """

    def __cinit__(self):
        self.buf = NULL
        self.gaps = NULL

    def __init__(self, bint keep_kinds=False):
        self.kinds = [] if keep_kinds else None
        self.start()
        self.active = False

    def __dealloc__(self):
        free(self.buf)
        free(self.gaps)

    cdef void start(self) noexcept:
        """A new response begins: forget the last one's events and parser state."""
        self.state = S_LINE
        self.field_pos = 0
        self.has_data = False
        self.skip_lf = False
        self.n = 0
        self.n_gaps = 0
        self.active = True
        self.first_token_ns = 0
        self.last_token_ns = 0
        self.content_events = 0
        self.reasoning_events = 0
        self.other_events = 0
        self.usage_completion_tokens = -1
        self.usage_prompt_tokens = -1
        self.done = False
        self.error = False
        self.bytes_dropped = 0
        self.gaps_dropped = 0
        if self.kinds is not None:
            self.kinds = []

    cdef int feed(self, const unsigned char* p, Py_ssize_t n, int64_t now_ns) except -1:
        """Scan n more body bytes that arrived at now_ns."""
        cdef Py_ssize_t i = 0, j
        cdef unsigned char c
        if self.skip_lf:
            self.skip_lf = False
            if n and p[0] == b'\n':
                i = 1  # the \n of a \r\n split across reads
        while i < n:
            if self.state == S_DATA or self.state == S_SKIP:
                j = i
                while j < n and p[j] != b'\n' and p[j] != b'\r':
                    j += 1
                if self.state == S_DATA and j > i:
                    self._append(p + i, j - i)
                i = j
                if i == n:
                    return 0
            c = p[i]
            if c == b'\n' or c == b'\r':
                if c == b'\r':
                    if i + 1 < n:
                        if p[i + 1] == b'\n':
                            i += 1
                    else:
                        self.skip_lf = True
                i += 1
                if self.state == S_LINE:
                    if self.has_data:
                        self._dispatch(now_ns)
                elif self.state == S_FIELD and self.field_pos == 4:
                    # "data" with no colon: a data line with an empty value
                    if self.has_data:
                        self._append(<const unsigned char*>b"\n", 1)
                    self.has_data = True
                self.state = S_LINE
                continue
            if self.state == S_LINE:
                if c == b':':
                    self.state = S_SKIP  # a comment (keep-alives are `: ping` and the like)
                    i += 1
                    continue
                self.state = S_FIELD
                self.field_pos = 0
            if self.state == S_FIELD:
                if c == b':':
                    if self.field_pos == 4:
                        if self.has_data:
                            self._append(<const unsigned char*>b"\n", 1)
                        self.has_data = True
                        self.state = S_SPACE
                    else:
                        self.state = S_SKIP
                elif 0 <= self.field_pos < 4 and c == DATA[self.field_pos]:
                    self.field_pos += 1
                else:
                    self.field_pos = -1
                i += 1
            elif self.state == S_SPACE:
                self.state = S_DATA
                if c == b' ':
                    i += 1
        return 0

    cdef int finish(self, int64_t now_ns) except -1:
        """The response body ended (its HTTP framing says so): an event not yet closed by a
        blank line still counts, even one whose last line has no line end."""
        if self.has_data:
            self._dispatch(now_ns)
        self.state = S_LINE
        return 0

    cdef int _append(self, const unsigned char* p, Py_ssize_t k) except -1:
        cdef Py_ssize_t want
        cdef unsigned char* grown
        if self.n + k > self.cap and self.cap < MAX_EVENT_BYTES:
            want = max(self.cap * 2, 512)
            while want < self.n + k and want < MAX_EVENT_BYTES:
                want *= 2
            want = min(want, MAX_EVENT_BYTES)
            grown = <unsigned char*>realloc(self.buf, want)
            if grown == NULL:
                raise MemoryError()
            self.buf, self.cap = grown, want
        if self.n + k > self.cap:
            self.bytes_dropped += self.n + k - self.cap
            k = self.cap - self.n
        if k > 0:
            memcpy(self.buf + self.n, p, k)
            self.n += k
        return 0

    cdef int _dispatch(self, int64_t now_ns) except -1:
        cdef const unsigned char* s = self.buf
        cdef const unsigned char* u
        cdef Py_ssize_t n = self.n, m, j
        cdef int kind = SSE_OTHER
        cdef int64_t v
        self.has_data = False
        self.n = 0
        if n == 6 and memmem(s, 6, b"[DONE]", 6) != NULL:
            self.done = True
            kind = SSE_DONE
        else:
            if (_nonempty_str(s, n, b'"content"', 9) or _nonempty_str(s, n, b'"text"', 6)):
                kind = SSE_CONTENT
                self.content_events += 1
                self._token(now_ns)
            elif (_nonempty_str(s, n, b'"reasoning_content"', 19)
                  or _nonempty_str(s, n, b'"reasoning"', 11)):
                kind = SSE_REASONING
                self.reasoning_events += 1
                self._token(now_ns)
            j = _value_at(s, n, b'"usage"', 7)
            if j >= 0 and j < n and s[j] == b'{':
                # The counts are searched from the usage object on (`null` elsewhere).
                u, m = s + j, n - j
                j = _value_at(u, m, b'"completion_tokens"', 19)
                v = _int_at(u, m, j) if j >= 0 else -1
                if v >= 0:
                    self.usage_completion_tokens = v
                j = _value_at(u, m, b'"prompt_tokens"', 15)
                v = _int_at(u, m, j) if j >= 0 else -1
                if v >= 0:
                    self.usage_prompt_tokens = v
            if kind == SSE_OTHER:
                j = _value_at(s, n, b'"error"', 7)
                if j >= 0 and j < n and (s[j] == b'{' or s[j] == b'"'):
                    self.error = True
                    kind = SSE_ERROR
                else:
                    self.other_events += 1
        if self.kinds is not None:
            self.kinds.append(kind)
        return 0

    cdef int _token(self, int64_t now_ns) except -1:
        cdef int64_t* grown
        cdef Py_ssize_t want
        if self.first_token_ns == 0:
            self.first_token_ns = now_ns
        else:
            if self.n_gaps == self.gaps_cap:
                if self.gaps_cap >= MAX_GAPS:
                    self.gaps_dropped += 1
                    self.last_token_ns = now_ns
                    return 0
                want = max(self.gaps_cap * 2, 256)
                grown = <int64_t*>realloc(self.gaps, want * sizeof(int64_t))
                if grown == NULL:
                    raise MemoryError()
                self.gaps, self.gaps_cap = grown, want
            self.gaps[self.n_gaps] = now_ns - self.last_token_ns
            self.n_gaps += 1
        self.last_token_ns = now_ns
        return 0

    # -- Python access (tests, and the rare Python-side caller) -------------------------------
    def begin(self):
        """Start a new response (what the transport does at each stream's headers)."""
        self.start()

    def scan(self, bytes data, int64_t now_ns=0):
        """Feed bytes that arrived at now_ns; returns (content events, reasoning events) so far."""
        self.feed(<const unsigned char*>data, len(data), now_ns)
        return self.content_events, self.reasoning_events

    def end(self, int64_t now_ns=0):
        """The body ended (see finish)."""
        self.finish(now_ns)

    @property
    def gaps_ns(self):
        """The response's inter-token gaps, ns (a list: a test aid)."""
        return [self.gaps[i] for i in range(self.n_gaps)]

    @property
    def event_kinds(self):
        """Every event's kind: 'other', 'content', 'reasoning', 'done' or 'error'."""
        names = ("other", "content", "reasoning", "done", "error")
        return None if self.kinds is None else [names[k] for k in self.kinds]

    @property
    def output_tokens(self):
        """The server's completion_tokens if it sent usage, else the token events counted."""
        if self.usage_completion_tokens >= 0:
            return self.usage_completion_tokens
        return self.content_events + self.reasoning_events
