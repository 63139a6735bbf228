"""The server side of a keep-alive HTTP/1.1 connection, parsed by httptools: what crestline's
own loopback programs (the test target, the demo model server) share."""

from __future__ import annotations

import asyncio
import signal

import httptools


async def serve_until_stopped(protocol_factory, host: str, port: int,
                              max_seconds: float | None) -> None:
    """Serve connections until SIGTERM/SIGINT or max_seconds, printing `listening on
    HOST:PORT` (the line test fixtures and the CLI wait for) once the socket is bound."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    srv = await loop.create_server(protocol_factory, host, port, backlog=4096)
    bound_host, bound_port = srv.sockets[0].getsockname()[:2]
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except asyncio.TimeoutError:
        pass
    finally:
        srv.close()


class RequestProtocol(asyncio.Protocol):
    """Feeds the bytes of one connection to an httptools request parser whose callbacks
    (on_url, on_body, on_message_complete, ...) are this object's methods. A request that does
    not parse gets bad_request() and the connection is closed."""

    def __init__(self):
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(self.bad_request())
            self.transport.close()

    def bad_request(self) -> bytes:
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


class BodyRequestProtocol(RequestProtocol):
    """A RequestProtocol that keeps each request's path and body: `url` (bytes), `body` (the
    pieces, up to max_body_bytes kept) and `body_bytes` (all of it, so an oversized body can be
    refused with its size)."""

    max_body_bytes = 64 << 20

    def __init__(self):
        super().__init__()
        self.url, self.body, self.body_bytes = b"", [], 0

    def on_message_begin(self):
        self.url, self.body, self.body_bytes = b"", [], 0

    def on_url(self, url):
        self.url += url

    def on_body(self, body):
        self.body_bytes += len(body)
        if self.body_bytes <= self.max_body_bytes:
            self.body.append(body)
