# The HTTP/2 connector (crestline._h2connector): opens sockets, attaches streams to sessions.
from crestline._h2 cimport H2Base


cdef class H2(H2Base):
    pass
