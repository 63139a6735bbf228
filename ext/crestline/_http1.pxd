# HTTP/1.1 keep-alive behind the transport seam (crestline._seam).
from libc.stdint cimport int64_t

from crestline._seam cimport Conn, Connector


cdef class Http1Conn(Conn):
    cdef object transport
    cdef object write       # transport.write, bound once per connection
    cdef object parser
    # the response to the request outstanding (reset by send)
    cdef bint got_bytes     # any byte of it read
    cdef int64_t done_ns    # when it completed (0: not yet); reported after the read
    cdef int done_status
    cdef bint done_keep
    cdef int n_extra        # more complete responses in the same read: a protocol error


cdef class Http1(Connector):
    cdef object loop
    cdef str host
    cdef int port
    cdef double connect_timeout_s
    cdef object ssl             # ssl.SSLContext, or None for plain TCP
    cdef object server_hostname
    cdef object addr            # getaddrinfo's first answer, resolved once

    cdef str _why(self, exc)
    cdef str _why_tls(self, exc)
