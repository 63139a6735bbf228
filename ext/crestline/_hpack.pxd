# The compiled HPACK decoder (crestline._hpack), cimported by the HTTP/2 transport.
cdef class HpackDecoder:
    cdef list table           # dynamic entries, newest first: (name, value) bytes
    cdef Py_ssize_t size      # RFC 7541 size of the dynamic table
    cdef Py_ssize_t max_size
    # from the last block decoded: :status (0: none), grpc-status (-1: none), grpc-message,
    # and whether its content-type makes the response a token stream (crestline._sse)
    cdef public int status
    cdef public int grpc_status
    cdef public object grpc_message
    cdef public bint event_stream

    cdef Py_ssize_t _int(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos,
                         int prefix) except -1
    cdef bytes _str(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos)
    cdef tuple _entry(self, Py_ssize_t index)
    cdef void _evict(self) noexcept
    cdef int decode(self, bytes block, list every) except -1
