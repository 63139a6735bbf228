"""A compiled HPACK decoder (RFC 7541) for the responses crestline reads: every field of every
block is decoded, so the dynamic table stays the server's, but only the fields a transport
asks for are handed back. Huffman strings are decoded bit by bit on a code tree built once
from RFC 7541 appendix B (the hpack package's copy of the table).

The `hpack` package's pure-Python decoder costs 2-9 µs per block; this one a fraction of a
µs for the usual blocks (bench/h2_bench.py, section 0).
"""
from libc.stdint cimport uint32_t

from crestline._sse cimport is_event_stream

from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

cdef list STATIC = [None] + [tuple(e) for e in HeaderTable.STATIC_TABLE]  # 1-based
cdef enum:
    N_STATIC = 61
    ENTRY_OVERHEAD = 32   # RFC 7541 section 4.1
    MAX_NODES = 514
    EOS = 256

# The Huffman code tree: node 0 is the root; child[n][bit] is the next node (0: none) and
# sym[n] the symbol at a leaf (-1 elsewhere).
cdef int child[MAX_NODES][2]
cdef int sym[MAX_NODES]
cdef int n_nodes = 1


cdef void _build_tree():
    global n_nodes
    cdef int s, i, node, bit, length
    cdef uint32_t code
    for i in range(MAX_NODES):
        child[i][0] = 0
        child[i][1] = 0
        sym[i] = -1
    for s in range(257):
        code = REQUEST_CODES[s]
        length = REQUEST_CODES_LENGTH[s]
        node = 0
        for i in range(length - 1, -1, -1):
            bit = (code >> i) & 1
            if child[node][bit] == 0:
                child[node][bit] = n_nodes
                n_nodes += 1
            node = child[node][bit]
        sym[node] = s


_build_tree()


class HpackError(ValueError):
    pass


cdef bytes _huffman(const unsigned char* p, Py_ssize_t n):
    cdef bytearray out = bytearray()
    cdef int node = 0, bit, s, depth = 0
    cdef Py_ssize_t i
    cdef int j
    for i in range(n):
        for j in range(7, -1, -1):
            bit = (p[i] >> j) & 1
            node = child[node][bit]
            depth += 1
            if node == 0:
                raise HpackError("bad Huffman code")
            s = sym[node]
            if s >= 0:
                if s == EOS:
                    raise HpackError("EOS inside a Huffman string")
                out.append(s)
                node = 0
                depth = 0
    # What is left must be a prefix of EOS (all ones), shorter than 8 bits.
    if depth > 7 or (depth and (p[n - 1] & ((1 << depth) - 1)) != (1 << depth) - 1):
        raise HpackError("bad Huffman padding")
    return bytes(out)


cdef int _digits(bytes value) except -2:
    """A decimal status (:status, grpc-status) read in C; not one is an HpackError."""
    cdef const unsigned char* p = value
    cdef Py_ssize_t i, n = len(value)
    cdef int v = 0
    if n == 0 or n > 9:
        raise HpackError(f"bad status value {value!r}")
    for i in range(n):
        if not 48 <= p[i] <= 57:
            raise HpackError(f"bad status value {value!r}")
        v = v * 10 + (p[i] - 48)
    return v


cdef class HpackDecoder:
    """The receive side of one connection's header compression."""

    def __cinit__(self):
        self.table = []
        self.size = 0
        self.max_size = 4096  # SETTINGS_HEADER_TABLE_SIZE: we never advertise another
        self.status = 0
        self.grpc_status = -1
        self.grpc_message = None

    cdef Py_ssize_t _int(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos,
                         int prefix) except -1:
        cdef Py_ssize_t i = pos[0]
        cdef Py_ssize_t top = (1 << prefix) - 1
        cdef Py_ssize_t value = p[i] & top
        cdef int shift = 0
        i += 1
        if value == top:
            while True:
                if i >= n or shift > 28:
                    raise HpackError("bad integer")
                value += (p[i] & 0x7f) << shift
                shift += 7
                i += 1
                if not p[i - 1] & 0x80:
                    break
        pos[0] = i
        return value

    cdef bytes _str(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos):
        cdef bint huff
        cdef Py_ssize_t length, start
        if pos[0] >= n:
            raise HpackError("truncated block")
        huff = p[pos[0]] & 0x80
        length = self._int(p, n, pos, 7)
        start = pos[0]
        if start + length > n:
            raise HpackError("string past the block's end")
        pos[0] = start + length
        if huff:
            return _huffman(p + start, length)
        return (<bytes>p[start:start + length]) if length else b""

    cdef tuple _entry(self, Py_ssize_t index):
        if index <= 0:
            raise HpackError("index 0")
        if index <= N_STATIC:
            return STATIC[index]
        index -= N_STATIC + 1
        if index >= len(self.table):
            raise HpackError("index past the dynamic table")
        return self.table[index]

    cdef void _evict(self) noexcept:
        cdef tuple e
        while self.size > self.max_size and self.table:
            e = self.table.pop()
            self.size -= len(<bytes>e[0]) + len(<bytes>e[1]) + ENTRY_OVERHEAD

    cdef int decode(self, bytes block, list every) except -1:
        """Decode block; set status, grpc_status, grpc_message, event_stream from it (0 / -1 /
        None / False when absent). every: None, or a list to append every (name, value) to
        (tests)."""
        cdef const unsigned char* p = block
        cdef Py_ssize_t n = len(block), pos = 0, index
        cdef int b
        cdef bytes name, value
        cdef tuple e
        self.status = 0
        self.grpc_status = -1
        self.grpc_message = None
        self.event_stream = False
        while pos < n:
            b = p[pos]
            if b & 0x80:                                    # indexed field
                e = self._entry(self._int(p, n, &pos, 7))
                name, value = e[0], e[1]
            elif b & 0x40:                                  # literal, incremental indexing
                index = self._int(p, n, &pos, 6)
                name = self._entry(index)[0] if index else self._str(p, n, &pos)
                value = self._str(p, n, &pos)
                self.table.insert(0, (name, value))
                self.size += len(name) + len(value) + ENTRY_OVERHEAD
                self._evict()
            elif b & 0x20:                                  # dynamic table size update
                index = self._int(p, n, &pos, 5)
                if index > 4096:
                    raise HpackError("table size past our SETTINGS_HEADER_TABLE_SIZE")
                self.max_size = index
                self._evict()
                continue
            else:                                           # literal, not / never indexed
                index = self._int(p, n, &pos, 4)
                name = self._entry(index)[0] if index else self._str(p, n, &pos)
                value = self._str(p, n, &pos)
            if every is not None:
                every.append((name, value))
            if len(name) == 7 and name == b":status":
                self.status = _digits(value)
            elif len(name) == 11 and name == b"grpc-status":
                self.grpc_status = _digits(value)
            elif len(name) == 12 and name == b"grpc-message":
                self.grpc_message = value
            elif len(name) == 12 and name == b"content-type":
                self.event_stream = is_event_stream(value)
        return 0

    def decode_all(self, bytes block):
        """Every (name, value) of block, in order (tests; the transports use decode)."""
        every = []
        self.decode(block, every)
        return every
