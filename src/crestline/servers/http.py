"""The server side of a keep-alive HTTP/1.1 connection, parsed by httptools: what crestline's
own loopback programs (the test target, the demo model server) share."""

from __future__ import annotations

import asyncio

import httptools


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
