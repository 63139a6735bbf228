# HTTP/1.1 keep-alive behind the transport seam (crestline._seam).
from crestline._seam cimport Conn, Connector


cdef class Http1Conn(Conn):
    cdef object transport
    cdef object write       # transport.write, bound once per connection
    cdef object parser


cdef class Http1(Connector):
    cdef object loop
    cdef str host
    cdef int port
    cdef double connect_timeout_s

    cdef str _why(self, exc)
