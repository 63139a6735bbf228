"""Feed byte streams to crestline's real HTTP/1.1 response path, split where the caller says.

A real Core (crestline._core) with the real transport (crestline._http1) sends one request to
an asyncio server on 127.0.0.1:0 on the same uvloop loop; the server answers it with the given
parts, a short pause between them so each tends to arrive in its own read, then closes. The
request must then end as exactly one of OUTCOMES: a response (by its status) or a counted
error. Shared by tests/fuzz (hypothesis) and bench/fuzz_bench.py (atheris).
"""

from __future__ import annotations

import asyncio

import numpy as np
import uvloop

from crestline import _core
from crestline.measure.hdr import LAYOUT

REQUEST = b"GET /fuzz HTTP/1.1\r\nHost: fuzz\r\n\r\n"
# What a request may end as: a response (ok, http_4xx, http_5xx) or a counted failure. Never
# timeout: the server closes after the last part, and a close settles any request.
OUTCOMES = ("ok", "http_4xx", "http_5xx", "protocol", "read")
_PAUSE_S = 0.0002


class _Answer(asyncio.Protocol):
    def __init__(self, feeder: Feeder):
        self.feeder, self.buf, self.transport = feeder, b"", None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.buf is None:  # answered already: one request per connection
            return
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.buf = None
            self.feeder.loop.create_task(self._answer(list(self.feeder.parts)))

    async def _answer(self, parts):
        for i, part in enumerate(parts):
            if self.transport.is_closing():
                return
            if i:
                await asyncio.sleep(_PAUSE_S)
            self.transport.write(part)
        self.transport.close()


class Feeder:
    """One loop, one server, one Core; `outcome(parts)` per input. Always close()."""

    def __init__(self, timeout_s: float = 5.0):
        self.loop = uvloop.new_event_loop()
        self.loop_errors: list[dict] = []  # anything that escaped a callback
        self.loop.set_exception_handler(lambda loop, ctx: self.loop_errors.append(ctx))
        self.parts: list[bytes] = []
        self.server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _Answer(self), "127.0.0.1", 0))
        port = self.server.sockets[0].getsockname()[1]
        self.core = _core.Core(self.loop, "127.0.0.1", port, [REQUEST], LAYOUT, connections=1,
                               max_inflight=1, timeout_s=timeout_s)
        self.timeout_s = timeout_s
        self.messages: list[tuple[str, str]] = []

    def outcome(self, parts: list[bytes]) -> str:
        """Send the request, answer it with parts, return what it ended as (one of OUTCOMES,
        or 'timeout' / 'unsettled', which callers treat as failures)."""
        self.parts = [p for p in parts if p]
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


def split(data: bytes, cuts) -> list[bytes]:
    """data cut at the given offsets (any order, repeats and out-of-range ones ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
