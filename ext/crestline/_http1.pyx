"""HTTP/1.1 keep-alive (Content-Length and chunked, via httptools), one request at a time,
over TCP or TLS.

No pipelining: a Conn carries one request, so a slow response never delays the next slot's
send behind it on the same socket (the core queues it for another connection instead).
"""
import asyncio
import socket
import ssl

import httptools

from libc.stdint cimport int64_t

from crestline._clock cimport now_ns
from crestline._sse cimport SseScanner, is_event_stream
from crestline._seam cimport (CONN_BUSY, CONN_DEAD, CONN_NEW, ERR_CONNECT, ERR_HTTP_4XX,
                              ERR_HTTP_5XX, ERR_PROTOCOL, ERR_TLS, OUTCOME_OK, Conn, Connector,
                              Owner)
from crestline._seam cimport ERR_READ


cdef class Http1Conn(Conn):
    """One keep-alive HTTP/1.1 connection; also its asyncio protocol (see Http1Protocol).

    A response is reported once the read that completed it is parsed to its end, so bytes
    after it in the same read (a second response, garbage, a lying Content-Length) fail that
    request as a protocol error instead of reaching the next one. What each hostile server
    behaviour counts as: docs/failure-modes.md.
    """

    def __init__(self, Owner owner):
        self.owner = owner
        self.parser = httptools.HttpResponseParser(self)
        self.state = CONN_NEW

    # -- the seam ---------------------------------------------------------------------------
    cdef send(self, object payload):
        self.got_bytes = False
        self.done_ns = 0
        self.n_extra = 0
        self.write(payload)

    cdef close(self):
        if self.transport is not None:
            self.transport.close()

    cdef abort(self):
        if self.transport is not None:
            self.transport.abort()

    cdef str status_message(self, int status):
        return f"HTTP {status}"

    # -- asyncio.Protocol and httptools callbacks -------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self.write = transport.write
        self.owner.conn_made(self)

    def data_received(self, data):
        cdef int64_t done
        cdef int status
        if self.state != CONN_BUSY:
            if self.state != CONN_DEAD:
                # Nothing is counted (no request is harmed): the connection is dropped
                # before it can carry one, and the next request opens another.
                self.owner.conn_error(self, ERR_PROTOCOL,
                                      "bytes from the server with no request outstanding")
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except Exception as exc:
            self.owner.conn_error(self, ERR_PROTOCOL, (
                f"bytes after the end of the response: {exc!r}" if self.done_ns else
                f"bad HTTP response: {exc!r}"))
            return
        done = self.done_ns
        if not done:
            return
        status = self.done_status
        if self.n_extra:
            self.owner.conn_error(self, ERR_PROTOCOL,
                                  f"{self.n_extra + 1} responses to one request")
        elif status == 101:
            self.owner.conn_error(self, ERR_PROTOCOL,
                                  "101 Switching Protocols to a request that asked for none")
        else:
            self.done_ns = 0
            self.owner.conn_done(self, done,
                                 ERR_HTTP_5XX if status >= 500 else
                                 ERR_HTTP_4XX if status >= 400 else OUTCOME_OK,
                                 status, self.done_keep)
        if self.sse is not None:
            self.sse.active = False  # read by the core; the next response starts afresh

    def on_header(self, bytes name, bytes value):
        # A `text/event-stream` response is a token stream: its body goes to the scanner.
        if len(name) == 12 and name.lower() == b"content-type" and is_event_stream(value):
            if self.sse is None:
                self.sse = SseScanner()
            self.sse.start()

    def on_body(self, bytes body):
        if self.sse is not None and self.sse.active:
            self.sse.feed(body, len(body), now_ns())

    def on_message_complete(self):
        cdef int status = self.parser.get_status_code()
        if status < 200 and status != 101:
            # 100 Continue, 103 Early Hints: interim, the final response is still to come.
            return
        if self.done_ns:
            self.n_extra += 1
            return
        self.done_ns = now_ns()  # the response's time: when its last byte was parsed
        self.done_status = status
        self.done_keep = self.parser.should_keep_alive()
        if self.sse is not None and self.sse.active:
            self.sse.finish(self.done_ns)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        if self.state == CONN_BUSY:
            # Said here, where it is known whether any of the response had come: a close
            # before the first byte is the keep-alive race (or a server that drops
            # requests); after it, a truncated response or a body delimited only by the
            # close, which cannot be told from a truncated one (RFC 9112 section 8).
            self.transport = None  # closed already: nothing to abort
            where = "mid-response" if self.got_bytes else "before any byte of the response"
            self.owner.conn_error(self, ERR_READ, (
                f"connection lost {where}: {exc!r}" if exc is not None else
                f"server closed the connection {where}" + (
                    " (truncated, or a body delimited only by the close)"
                    if self.got_bytes else "")))
        self.owner.conn_lost(self, exc)


class Http1Protocol(Http1Conn, asyncio.Protocol):
    pass


class _TimedHttp1Protocol(Http1Protocol):
    """Http1Protocol as the connector opens it: stamps when the connection came up (after the
    TLS handshake, on a TLS transport), so the connector reports set-up times once per
    connection; and counts a TLS alert that ends a request as a `tls` error, not a `read`."""

    tcp_ns = 0  # TCP connected (TLS only: the handshake starts here)
    up_ns = 0

    def connection_made(self, transport):
        self.up_ns = now_ns()
        Http1Protocol.connection_made(self, transport)

    def connection_lost(self, exc):
        if isinstance(exc, ssl.SSLError) and (<Conn>self).state == CONN_BUSY:
            # Under TLS 1.3 a server refusing the client's certificate (mTLS) says so only
            # here, on the first read after the client's side of the handshake ended.
            (<Conn>self).owner.conn_error(self, ERR_TLS, f"TLS alert: {_tls_reason(exc)}")
        Http1Protocol.connection_lost(self, exc)


cdef str _tls_reason(exc):
    """OpenSSL's reason (TLSV13_ALERT_CERTIFICATE_REQUIRED) as words."""
    reason = getattr(exc, "reason", None)
    return reason.lower().replace("_", " ") if reason else str(exc)


async def connect_tls(loop, protocol, addr, ssl, server_hostname, double timeout_s):
    """Connect a socket to addr (a getaddrinfo answer), stamp protocol.tcp_ns, then run the
    TLS handshake over it with protocol as the connection's protocol: so the TCP connect and
    the handshake are timed apart (crestline._h2connector opens its sockets so too)."""
    family, type_, proto, _, sockaddr = addr
    sock = socket.socket(family, type_, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, sockaddr)
        protocol.tcp_ns = now_ns()
        await loop.create_connection(lambda: protocol, sock=sock, ssl=ssl,
                                     server_hostname=server_hostname,
                                     ssl_handshake_timeout=timeout_s)
    except BaseException:
        sock.close()
        raise


cdef class Http1(Connector):
    """Opens HTTP/1.1 connections to host:port, each within connect_timeout_s (TCP connect
    and, with ssl (an ssl.SSLContext), the TLS handshake together).

    With TLS the socket is connected first and the handshake started on it, so the two times
    are known apart; server_hostname is sent as SNI and checked against the certificate.
    """

    def __init__(self, loop, str host, int port, double connect_timeout_s, ssl=None,
                 server_hostname=None):
        self.loop = loop
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.addr = None

    cdef open(self, Owner owner):
        self.loop.create_task(self._open(owner))

    async def _open(self, Owner owner):
        conn = _TimedHttp1Protocol(owner)
        cdef int64_t t0 = now_ns()
        try:
            if self.ssl is None:
                await asyncio.wait_for(
                    self.loop.create_connection(lambda: conn, self.host, self.port),
                    self.connect_timeout_s)
            else:
                await asyncio.wait_for(self._open_tls(conn), self.connect_timeout_s)
        except asyncio.CancelledError:
            # The loop is going away: no request is failed for it.
            if (<Conn>conn).state == CONN_NEW:
                owner.conn_failed(ERR_CONNECT, None)
            raise
        except BaseException as exc:
            # A connection that came up and then broke is reported by its own callbacks.
            if (<Conn>conn).state == CONN_NEW:
                (<Conn>conn).state = CONN_DEAD
                # Past the TCP connect, what failed is the handshake.
                if conn.tcp_ns:
                    owner.conn_failed(ERR_TLS, self._why_tls(exc))
                else:
                    owner.conn_failed(ERR_CONNECT, self._why(exc))
        else:
            if self.ssl is None:
                owner.conn_setup(conn.up_ns - t0, -1)
            else:
                owner.conn_setup(conn.tcp_ns - t0, conn.up_ns - conn.tcp_ns)

    async def _open_tls(self, conn):
        if self.addr is None:
            infos = await self.loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            self.addr = infos[0]
        await connect_tls(self.loop, conn, self.addr, self.ssl, self.server_hostname,
                          self.connect_timeout_s)

    cdef str _why(self, exc):
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return (f"connect to {self.host}:{self.port} timed out after "
                    f"{self.connect_timeout_s:g} s")
        return f"connect to {self.host}:{self.port}: {exc}"

    cdef str _why_tls(self, exc):
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return (f"TLS handshake with {self.host}:{self.port} timed out (connect and "
                    f"handshake within {self.connect_timeout_s:g} s)")
        # ssl.SSLCertVerificationError says what is wrong: expired, wrong host, unknown CA.
        why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or exc
        return f"TLS handshake with {self.host}:{self.port}: {why}"
