"""Opens HTTP/2 streams for the core (crestline._seam): attaches each to a session
(crestline._h2.H2Session) with room, or opens a socket for a new one; the TCP connect and the
TLS handshake timed apart, like crestline._http1."""
import asyncio
import socket

from libc.stdint cimport int64_t

from crestline._clock cimport now_ns
from crestline._h2 cimport H2Base, H2Session
from crestline._seam cimport ERR_CONNECT, ERR_TLS, Owner

from crestline._h2 import H2Protocol
from crestline._http1 import connect_tls


cdef class H2(H2Base):
    """Opens HTTP/2 streams to host:port for the core: each open attaches one stream slot to
    a session with room (at most `streams` each, and no more than the server allows), or
    opens a new socket (TCP connect and, with ssl, the TLS handshake within
    connect_timeout_s; then the server's SETTINGS within connect_timeout_s more).

    grpc: responses are gRPC (outcome by grpc-status, from trailers or a trailers-only
    response). Needs the hpack package's tables (pip install crestline[http2]).
    """

    def __init__(self, loop, str host, int port, double connect_timeout_s, ssl=None,
                 server_hostname=None, int streams=1, bint grpc=False):
        self.loop = loop
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.streams = streams
        self.grpc = grpc
        self.sessions = []
        self.addr = None

    cdef open(self, Owner owner):
        cdef H2Session s
        for s in self.sessions:
            if s.can_take():
                s.n_pending += 1
                if s.ready:
                    # Said on the next turn: the core may be in the middle of its books.
                    self.loop.call_soon(s._attach_soon)
                return
        s = H2Protocol(self, owner)
        s.n_pending = 1
        self.sessions.append(s)
        self.loop.create_task(self._open(s))

    async def _open(self, H2Session s):
        cdef int64_t t0 = now_ns()
        try:
            await asyncio.wait_for(self._connect(s), self.connect_timeout_s)
        except asyncio.CancelledError:
            s.closed = True
            n, s.n_pending = s.n_pending, 0
            for _ in range(n):
                s.owner.conn_failed(ERR_CONNECT, None)
            raise
        except BaseException as exc:
            if s.transport is None:
                s.closed = True
                try:
                    self.sessions.remove(s)
                except ValueError:
                    pass
                timed_out = isinstance(exc, (asyncio.TimeoutError, TimeoutError))
                if s.tcp_ns:
                    # Past the TCP connect, what failed is the handshake.
                    s._fail_pending(ERR_TLS, f"TLS handshake with {self.host}:{self.port}: " + (
                        f"timed out (connect and handshake within {self.connect_timeout_s:g} s)"
                        if timed_out else str(getattr(exc, "verify_message", None)
                                              or getattr(exc, "reason", None) or exc)))
                else:
                    s._fail_pending(ERR_CONNECT, f"connect to {self.host}:{self.port}: " + (
                        f"timed out after {self.connect_timeout_s:g} s" if timed_out
                        else str(exc)))
        else:
            if self.ssl is None:
                s.owner.conn_setup(s.up_ns - t0, -1)
            else:
                s.owner.conn_setup(s.tcp_ns - t0, s.up_ns - s.tcp_ns)

    async def _connect(self, H2Session s):
        if self.ssl is None:
            await self.loop.create_connection(lambda: s, self.host, self.port)
            return
        if self.addr is None:
            infos = await self.loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            self.addr = infos[0]
        await connect_tls(self.loop, s, self.addr, self.ssl, self.server_hostname,
                          self.connect_timeout_s)
