"""Feed byte streams to crestline's real response path, split where the caller says.

A real Core (crestline._core) with a real transport (crestline._http1, or with http2=True the
HTTP/2 connector crestline._h2connector, prior knowledge) sends one request to an asyncio
server on 127.0.0.1:0 on the same uvloop loop; once the request is in (HTTP/2: the client's
preface and a HEADERS frame) the server answers it with the given parts, a short pause
between them so each tends to arrive in its own read, then closes. The request must then end
as exactly one of the feeder's outcomes (OUTCOMES; for gRPC also GRPC_ERROR_KINDS): a response
(by its status) or a counted error. Shared by tests/fuzz (hypothesis) and bench/fuzz_bench.py
(atheris).
"""

from __future__ import annotations

import asyncio

import numpy as np
import uvloop

from crestline import _core
from crestline.measure.hdr import LAYOUT
from crestline.measure.result import GRPC_ERROR_KINDS
from crestline.transport.connect import plan_for
from crestline.transport.grpc_body import GrpcTarget
from crestline.transport.tls import TlsOptions

REQUEST = b"GET /fuzz HTTP/1.1\r\nHost: fuzz\r\n\r\n"
# A gRPC unary call as crestline renders it from a run's request: path = method, body = message
GRPC_REQUEST = b"POST /fuzz.Svc/Call HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 3\r\n\r\nabc"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame
# What a request may end as: a response (ok, http_4xx, http_5xx) or a counted failure. Never
# timeout: the server closes after the last part, and a close settles any request.
OUTCOMES = ("ok", "http_4xx", "http_5xx", "protocol", "read")
GRPC_OUTCOMES = OUTCOMES + GRPC_ERROR_KINDS  # a gRPC call also ends by its grpc-status
_PAUSE_S = 0.0002


class _Answer(asyncio.Protocol):
    def __init__(self, feeder: Feeder):
        self.feeder, self.buf, self.transport = feeder, b"", None
        self.greeted = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.buf is None:  # answered already: one request per connection
            return
        self.buf += data
        if self.feeder.http2 and not self.greeted and len(self.buf) >= len(H2_PREFACE):
            # An HTTP/2 client sends its request only once the server's SETTINGS are in.
            self.greeted = True
            self.transport.write(self.feeder.greeting)
        if self.feeder.request_in(self.buf):
            self.buf = None
            self.feeder.loop.create_task(self._answer(list(self.feeder.parts)))

    async def _answer(self, parts):
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(_PAUSE_S)
            if self.transport.is_closing():  # the client gave up on the connection meanwhile
                return
            self.transport.write(part)
        self.transport.close()


class Feeder:
    """One loop, one server, one Core; `outcome(parts)` per input. Always close()."""

    def __init__(self, timeout_s: float = 5.0, http2: bool = False, grpc: bool = False):
        """http2: over the HTTP/2 connector (prior knowledge); grpc: gRPC unary calls over
        it."""
        self.http2, self.grpc = http2 or grpc, grpc
        self.outcomes = GRPC_OUTCOMES if grpc else OUTCOMES
        # HTTP/2: what the server writes on the client's preface, before the request (each
        # outcome() sets it); the fuzzed parts answer the request itself.
        self.greeting = b""
        self.loop = uvloop.new_event_loop()
        self.loop_errors: list[dict] = []  # anything that escaped a callback
        self.loop.set_exception_handler(lambda loop, ctx: self.loop_errors.append(ctx))
        self.parts: list[bytes] = []
        self.server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _Answer(self), "127.0.0.1", 0))
        port = self.server.sockets[0].getsockname()[1]
        plan = plan_for("grpc" if grpc else "http", "127.0.0.1", TlsOptions(), http2=http2,
                        streams=1, grpc=GrpcTarget("fuzz") if grpc else None)
        request = plan.render(GRPC_REQUEST if grpc else REQUEST)
        self.core = _core.Core(self.loop, "127.0.0.1", port, [request], LAYOUT,
                               connections=plan.streams, max_inflight=1, timeout_s=timeout_s,
                               transport=plan.factory)
        self.timeout_s = timeout_s
        self.messages: list[tuple[str, str]] = []

    def request_in(self, buf: bytes) -> bool:
        """Has the whole request arrived? HTTP/1.1: its head; HTTP/2: a HEADERS frame after
        the preface."""
        if not self.http2:
            return b"\r\n\r\n" in buf
        i = len(H2_PREFACE)
        while i + 9 <= len(buf):
            if buf[i + 3] == 0x1:  # HEADERS
                return True
            i += 9 + int.from_bytes(buf[i:i + 3], "big")
        return False

    def outcome(self, parts: list[bytes], greeting: bytes = H2_SETTINGS) -> str:
        """Send the request, answer it with parts, return what it ended as (one of OUTCOMES,
        or 'timeout' / 'unsettled', which callers treat as failures). greeting: with http2,
        the server's side of the connection preface."""
        self.parts, self.greeting = [p for p in parts if p], greeting
        return self.loop.run_until_complete(self._one())

    async def _one(self) -> str:
        core = self.core
        sent = [False]

        def one_slot():
            if sent[0]:
                return None
            sent[0] = True
            return np.zeros(1, dtype=np.int64), None

        core.take_interval()  # whatever an earlier input left counted is not this one's
        now = _core.monotonic_ns()
        core.start(now, now + 10**9, one_slot)
        deadline = now + int((self.timeout_s + 1.0) * 1e9)
        ok, errors, self.messages = 0, [], []
        while True:
            await asyncio.sleep(_PAUSE_S)
            c = core.take_interval()[0]  # counters reset on every take: add them up
            ok += c["ok"]
            errors += [k for k, v in c["by_error"].items() for _ in range(v)]
            self.messages += c["messages"]
            settled = not core.inflight and not c["connections"]
            if settled or _core.monotonic_ns() > deadline:
                break
        kinds = errors + ["ok"] * ok
        return kinds[0] if len(kinds) == 1 and settled else "unsettled"

    def close(self):
        self.core.close()
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()


def settled(feeder: Feeder, parts: list[bytes], greeting: bytes = H2_SETTINGS) -> str:
    """feeder.outcome(parts, greeting), asserting that nothing escaped a callback and that the
    request ended as one of its outcomes (the property every fuzz test starts from)."""
    got = feeder.outcome(parts, greeting)
    assert feeder.loop_errors == [], feeder.loop_errors
    assert got in feeder.outcomes, (got, parts, feeder.messages)
    return got


def split(data: bytes, cuts) -> list[bytes]:
    """data cut at the given offsets (any order, repeats and out-of-range ones ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
