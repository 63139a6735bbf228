"""The transport seam's base classes (declared in _seam.pxd); transports subclass them.

The bases raise: a transport that forgets a method fails loudly on the first request, never
silently sends nothing.
"""


cdef class Conn:
    cdef send(self, object payload):
        raise NotImplementedError(f"{type(self).__name__}.send")

    cdef close(self):
        raise NotImplementedError(f"{type(self).__name__}.close")

    cdef abort(self):
        raise NotImplementedError(f"{type(self).__name__}.abort")

    cdef str status_message(self, int status):
        return f"status {status}"


cdef class Owner:
    cdef conn_made(self, Conn conn):
        raise NotImplementedError

    cdef conn_failed(self, int kind, str why):
        raise NotImplementedError

    cdef conn_setup(self, int64_t connect_ns, int64_t handshake_ns):
        raise NotImplementedError

    cdef conn_done(self, Conn conn, int64_t now_ns, int outcome, int status, bint reuse):
        raise NotImplementedError

    cdef conn_error(self, Conn conn, int kind, str why):
        raise NotImplementedError

    cdef conn_lost(self, Conn conn, object exc):
        raise NotImplementedError


cdef class Connector:
    cdef open(self, Owner owner):
        raise NotImplementedError(f"{type(self).__name__}.open")
