# cython: language_level=3
"""bench/fuzz_bench.py's Connector: open() only counts the request for a connection, and the
harness itself makes that connection (a real Http1Protocol on a sink transport), so the real
Core and Http1Conn run a few microseconds per input with no socket. Built at run time."""
from crestline._seam cimport Connector, Owner


cdef class PendingConnector(Connector):
    cdef public int pending

    def __init__(self, loop, host, port, connect_timeout_s, *args, **kwargs):
        self.pending = 0

    cdef open(self, Owner owner):
        self.pending += 1
