"""A loopback HTTP/2 server for the HTTP/2 and gRPC tests, in its own process (the `h2` package).

    python tests/h2_server.py --port 0 [--tls CERT KEY] [--max-streams N] [--body-bytes B] ...

Prints "listening on HOST:PORT". Plain sockets take prior knowledge (h2c); with --tls, ALPN h2.
Every request is read to its end (its DATA acknowledged: flow control), then answered with
--body-bytes of body after --delay-ms, under flow control in its turn. Faults every Nth request
(counted over the whole server): --stall-every/--stall-ms hold one response while others flow,
--rst-every resets the stream, --goaway-after sends GOAWAY on the connection after that many
requests. --grpc answers as a gRPC server (length-prefixed message, grpc-status trailers);
--grpc-fail-every N answers every Nth call trailers-only with --grpc-fail-code. --log FILE gets
one line per finished request: the most streams open at once on its connection, the request
body's bytes, and the connection's number.

--sse answers as an OpenAI-compatible chat stream (text/event-stream): the role-only prelude at
once, the first of --sse-tokens content chunks after --delay-ms, the next ones --sse-gap-ms
apart (each chunk worth --sse-tokens-per-chunk tokens), then a finish chunk, a usage chunk and
[DONE]. A stalled request (--stall-every) waits --stall-ms more before content chunk
--stall-at-token (0: before the first); every --cut-every-th stream is cut after
--cut-after-tokens chunks, by RST_STREAM (--cut rst) or by GOAWAY and closing the socket
(--cut goaway); --pad N pads their DATA frames, --split-events splits each write in two DATA
frames mid-event. --http1 also answers HTTP/1.1 on the same port (told apart by the client's
first bytes), the same stream as a chunked body, so one stream can be read both ways.
--sse-content-type sets the stream's Content-Type; --plain-every N answers every Nth request
as a plain response instead. Framing faults h2 itself will not write, on a plain response:
--bad-pad (a DATA frame shorter than its padding), --continuation-flood N (a header block
that goes on in N CONTINUATION frames of 16 KiB and never ends).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import ssl
import sys

import uvloop
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings

COUNT = itertools.count(1)
CONNS = itertools.count(1)


def _event(obj: dict) -> bytes:
    return b"data: " + json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                                   "model": "m", **obj}).encode() + b"\n\n"


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    return _event({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def sse_plan(a, n: int) -> list[tuple[float, bytes | None]]:
    """Request n's stream: (seconds after the step before, event bytes); None is the cut."""
    stalled = a.stall_every and n % a.stall_every == 0
    cut = a.cut_every and n % a.cut_every == 0
    k = a.sse_tokens_per_chunk
    plan: list[tuple[float, bytes | None]] = [(0.0, _chunk({"role": "assistant", "content": ""}))]
    for i in range(a.sse_tokens):
        if cut and i == a.cut_after_tokens:
            return [*plan, (a.sse_gap_ms / 1000, None)]
        gap_s = (a.delay_ms if i == 0 else a.sse_gap_ms) / 1000
        if stalled and i == a.stall_at_token:
            gap_s += a.stall_ms / 1000
        plan.append((gap_s, _chunk({"content": " ".join(["tok"] * k) + " "})))
    tokens = a.sse_tokens * k
    usage = {"prompt_tokens": 4, "completion_tokens": tokens, "total_tokens": 4 + tokens}
    end = (_chunk({}, "length") + _event({"choices": [], "usage": usage})
           + b"data: [DONE]\n\n")
    return [*plan, (a.sse_gap_ms / 1000, end)]


class SsePlayer:
    """Plays a plan over one stream: write(bytes, last) sends, cut() cuts; stops once
    cancelled (the client reset the stream, or the connection went)."""

    def __init__(self, plan, write, cut):
        self.plan, self.write, self.cut = plan, write, cut
        self.cancelled = False
        self.step(0)

    def step(self, i):
        if self.cancelled:
            return
        gap_s, ev = self.plan[i]
        if i and gap_s > 0:
            asyncio.get_running_loop().call_later(gap_s, self.send, i)
        else:
            self.send(i)

    def send(self, i):
        if self.cancelled:
            return
        ev = self.plan[i][1]
        if ev is None:
            self.cut()
            return
        last = i == len(self.plan) - 1
        self.write(ev, last)
        if not last:
            self.step(i + 1)


class Http1Sse(asyncio.Protocol):
    """The --sse stream over HTTP/1.1 keep-alive, as a chunked body; a cut closes the socket."""

    def __init__(self, a, transport):
        self.a, self.transport = a, transport
        self.buf = b""
        self.player = None

    def data_received(self, data):
        self.buf += data
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.buf = rest[length:]
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                 b"transfer-encoding: chunked\r\n\r\n")
            self.player = SsePlayer(sse_plan(self.a, next(COUNT)), self.write, self.cut)

    def write(self, ev, last):
        if self.transport is None:
            return
        self.transport.write(b"%x\r\n%s\r\n" % (len(ev), ev) + (b"0\r\n\r\n" if last else b""))

    def cut(self):
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc):
        self.transport = None
        if self.player is not None:
            self.player.cancelled = True


class H2Server(asyncio.Protocol):
    def __init__(self, a, log):
        self.a, self.log = a, log
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.body_in: dict[int, int] = {}
        self.sending: dict[int, memoryview] = {}
        self.players: dict[int, SsePlayer] = {}
        self.open_now = self.max_open = self.served = 0
        self.number = next(CONNS)
        self.transport = None
        self.http1 = None  # with --http1, the HTTP/1.1 side once the first bytes say so
        self.sniffed = b""

    def connection_made(self, transport):
        self.transport = transport
        if not self.a.http1:
            self.start()

    def start(self):
        # The limit goes out in the first SETTINGS, as real servers send it.
        self.conn.local_settings = Settings(
            client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: self.a.max_streams})
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        if self.transport is not None:
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data):
        if self.a.http1 and self.http1 is None and self.sniffed is not None:
            # The h2 preface starts "PRI *", an HTTP/1.1 request with its method.
            self.sniffed += data
            if len(self.sniffed) < 5:
                return
            data, self.sniffed = self.sniffed, None
            if not data.startswith(b"PRI *"):
                self.http1 = Http1Sse(self.a, self.transport)
            else:
                self.start()
        if self.http1 is not None:
            self.http1.data_received(data)
            return
        try:
            events = self.conn.receive_data(data)
        except Exception:  # a protocol error: h2 has queued its GOAWAY
            self.flush()
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, RequestReceived):
                self.body_in[ev.stream_id] = 0
                self.open_now += 1
                self.max_open = max(self.max_open, self.open_now)
            elif isinstance(ev, DataReceived):
                self.body_in[ev.stream_id] = self.body_in.get(ev.stream_id, 0) + len(ev.data)
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, StreamEnded):
                self.on_request(ev.stream_id)
            elif isinstance(ev, WindowUpdated):
                self.send_pending()
            elif isinstance(ev, StreamReset):
                self.sending.pop(ev.stream_id, None)
                player = self.players.pop(ev.stream_id, None)
                if player is not None:
                    player.cancelled = True
                self.open_now -= 1
            elif isinstance(ev, ConnectionTerminated):
                self.transport.close()
        self.flush()

    def on_request(self, sid):
        n = next(COUNT)
        a = self.a
        self.served += 1
        if a.log:
            self.log.write(f"max_open={self.max_open} body={self.body_in.get(sid, 0)} "
                           f"conn={self.number}\n")
            self.log.flush()
        if a.goaway_after and self.served == a.goaway_after:
            # This stream is answered; streams after it are not processed. The socket closes
            # a moment later, as a server restarting would.
            self.respond(sid, n)
            self.conn.close_connection(ErrorCodes.NO_ERROR, last_stream_id=sid)
            self.flush()
            asyncio.get_running_loop().call_later(0.05, self.transport.close)
            return
        if a.rst_every and n % a.rst_every == 0:
            self.conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
            self.open_now -= 1
            return
        self.respond_later(sid, n)

    def respond_later(self, sid, n):
        a = self.a
        if a.sse:
            self.respond(sid, n)  # its plan holds the delay and the stall
            return
        delay_s = a.delay_ms / 1000
        if a.stall_every and n % a.stall_every == 0:
            delay_s += a.stall_ms / 1000
        if delay_s > 0:
            asyncio.get_running_loop().call_later(delay_s, self.respond, sid, n)
        else:
            self.respond(sid, n)

    def respond(self, sid, n):
        a = self.a
        try:
            if a.bad_pad or a.continuation_flood:
                self.send_raw_fault(sid)
            elif a.sse and not (a.plain_every and n % a.plain_every == 0):
                self.conn.send_headers(sid, [(b":status", b"200"),
                                             (b"content-type", a.sse_content_type.encode()),
                                             (b"cache-control", b"no-cache")])
                self.players[sid] = SsePlayer(
                    sse_plan(a, n), lambda ev, last: self.sse_write(sid, ev, last),
                    lambda: self.sse_cut(sid))
            elif a.grpc and a.grpc_fail_every and n % a.grpc_fail_every == 0:
                self.conn.send_headers(sid, [(b":status", b"200"),
                                             (b"content-type", b"application/grpc"),
                                             (b"grpc-status", str(a.grpc_fail_code).encode()),
                                             (b"grpc-message", b"injected failure")],
                                       end_stream=True)
                self.open_now -= 1
            elif a.grpc:
                self.conn.send_headers(sid, [(b":status", b"200"),
                                             (b"content-type", b"application/grpc")])
                msg = b"\x08\x01" * (a.body_bytes // 2)
                self.queue(sid, b"\x00" + len(msg).to_bytes(4, "big") + msg)
            else:
                self.conn.send_headers(sid, [(b":status", str(a.status).encode()),
                                             (b"content-length", str(a.body_bytes).encode()),
                                             (b"server", b"crestline-h2-test")],
                                       end_stream=a.body_bytes == 0)
                if a.body_bytes:
                    self.queue(sid, b"x" * a.body_bytes)
                else:
                    self.open_now -= 1
        except (StreamClosedError, ProtocolError):
            pass  # the client reset it meanwhile (its timeout), or the connection is going
        self.flush()

    def send_raw_fault(self, sid):
        """Frames h2 refuses to write, straight onto the socket: a plain response whose DATA
        frame is shorter than its padding (--bad-pad), or a header block that never ends
        (--continuation-flood N CONTINUATION frames of 16 KiB after the HEADERS)."""
        self.flush()

        def frame(ftype, flags, payload):
            return (len(payload).to_bytes(3, "big") + bytes([ftype, flags])
                    + sid.to_bytes(4, "big") + payload)

        if self.a.bad_pad:
            self.conn.send_headers(sid, [(b":status", b"200"), (b"content-length", b"1")])
            self.flush()
            self.transport.write(frame(0, 0x8 | 0x1, b"\x05x"))  # pad 5 of a 2-byte payload
            return
        out = [frame(1, 0, b"\x88")]  # :status 200, END_HEADERS unset
        out += [frame(9, 0, b"\x00" * 16384)] * self.a.continuation_flood
        self.transport.write(b"".join(out))

    def sse_write(self, sid, ev, last):
        half = len(ev) // 2 if self.a.split_events else 0
        try:
            if half:
                self.conn.send_data(sid, ev[:half], pad_length=self.a.pad or None)
            self.conn.send_data(sid, ev[half:], end_stream=last, pad_length=self.a.pad or None)
        except (StreamClosedError, ProtocolError):
            return
        if last:
            self.players.pop(sid, None)
            self.open_now -= 1
        self.flush()

    def sse_cut(self, sid):
        self.players.pop(sid, None)
        if self.a.cut == "rst":
            try:
                self.conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
            except (StreamClosedError, ProtocolError):
                return
            self.open_now -= 1
            self.flush()
            return
        # A server going down mid-stream: GOAWAY (every stream so far was processed), then
        # the socket closes under the streams still open.
        self.conn.close_connection(ErrorCodes.INTERNAL_ERROR,
                                   last_stream_id=self.conn.highest_inbound_stream_id)
        self.flush()
        self.transport.close()

    def queue(self, sid, body):
        self.sending[sid] = memoryview(body)
        self.send_pending()

    def send_pending(self):
        for sid, rest in list(self.sending.items()):
            try:
                while rest:
                    room = min(self.conn.local_flow_control_window(sid),
                               self.conn.max_outbound_frame_size)
                    if room <= 0:
                        break
                    self.conn.send_data(sid, rest[:room].tobytes())
                    rest = rest[room:]
                if rest:
                    self.sending[sid] = rest
                    continue
                del self.sending[sid]
                if self.a.grpc:
                    self.conn.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
                else:
                    self.conn.end_stream(sid)
                self.open_now -= 1
            except StreamClosedError:
                self.sending.pop(sid, None)
        self.flush()

    def connection_lost(self, exc):
        self.transport = None
        for player in self.players.values():
            player.cancelled = True
        if self.http1 is not None:
            self.http1.connection_lost(exc)


async def serve(a):
    log = open(a.log, "a") if a.log else None
    ctx = None
    if a.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*a.tls)
        ctx.set_alpn_protocols(a.alpn.split(","))
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: H2Server(a, log), "127.0.0.1", a.port, ssl=ctx)
    host, port = srv.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    await asyncio.sleep(a.max_seconds)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--alpn", default="h2", help="protocols the TLS server offers")
    p.add_argument("--max-streams", type=int, default=100)
    p.add_argument("--status", type=int, default=200)
    p.add_argument("--body-bytes", type=int, default=2)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--stall-every", type=int, default=0)
    p.add_argument("--stall-ms", type=float, default=0.0)
    p.add_argument("--rst-every", type=int, default=0)
    p.add_argument("--goaway-after", type=int, default=0)
    p.add_argument("--grpc", action="store_true")
    p.add_argument("--grpc-fail-every", type=int, default=0)
    p.add_argument("--grpc-fail-code", type=int, default=14)
    p.add_argument("--log", default=None)
    p.add_argument("--sse", action="store_true")
    p.add_argument("--sse-tokens", type=int, default=16)
    p.add_argument("--sse-gap-ms", type=float, default=10.0)
    p.add_argument("--sse-tokens-per-chunk", type=int, default=1)
    p.add_argument("--stall-at-token", type=int, default=0)
    p.add_argument("--cut-every", type=int, default=0)
    p.add_argument("--cut-after-tokens", type=int, default=0)
    p.add_argument("--cut", choices=("rst", "goaway"), default="rst")
    p.add_argument("--http1", action="store_true")
    p.add_argument("--pad", type=int, default=0, help="padding bytes in each --sse DATA frame")
    p.add_argument("--sse-content-type", default="text/event-stream")
    p.add_argument("--plain-every", type=int, default=0,
                   help="with --sse, every Nth request answered as a plain response")
    p.add_argument("--bad-pad", action="store_true",
                   help="a plain response's DATA frame shorter than its padding")
    p.add_argument("--continuation-flood", type=int, default=0, metavar="N",
                   help="a header block of N more CONTINUATION frames that never ends")
    p.add_argument("--split-events", action="store_true", help="each --sse write in 2 DATA frames")
    uvloop.run(serve(p.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
