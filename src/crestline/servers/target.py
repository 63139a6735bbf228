"""A small loopback HTTP/1.1 target with known behaviour: fixed delay, stalls, and faults.

For trying crestline without a model server (`crestline target`), and for the test suite,
which runs it in its own process so it never shares the client's interpreter. Faults are
injected every Nth request: 5xx answers, connection resets, hangs, `Connection: close`.

With `--servers C` it is a FIFO queue with C workers instead (M/D/C or M/M/C under Poisson
load): each response is sent at max(arrival, earliest free worker) + its service time. The
queue is virtual (a heap of worker free times, no threads), so its truth is exact.

    python -m crestline.servers.target --port 0 --delay-ms 5      # prints "listening on HOST:PORT"
    python -m crestline.servers.target --port 0 --servers 4 --service-ms 2 --service-dist exp
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import heapq
import itertools
import os
import random
import socket
import struct
import sys
import time

from crestline.servers.http import RequestProtocol

BODY = b'{"model":"crestline-target","outputs":[0.25,0.5,0.25]}'


class _Target(RequestProtocol):
    def __init__(self, server: TargetServer):
        super().__init__()
        self.server = server

    def on_message_complete(self):
        self.server.on_request(self)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _DelayQueue:
    """Responses due at precise monotonic times: a heap and one timerfd (ns, never early).

    The event loop's own timers round to milliseconds and may fire early, which would make
    a "5 ms" server answer in 4.5 ms.
    """

    _CLOCK_MONOTONIC, _TFD_NONBLOCK, _TFD_TIMER_ABSTIME = 1, os.O_NONBLOCK, 1

    def __init__(self, loop):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.timerfd_create(self._CLOCK_MONOTONIC, self._TFD_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self.heap: list = []
        self.seq = itertools.count()
        self.armed_ns = None
        loop.add_reader(self.fd, self._fire)

    def push(self, due_ns: int, fn, *args) -> None:
        heapq.heappush(self.heap, (due_ns, next(self.seq), fn, args))
        if self.armed_ns is None or due_ns < self.armed_ns:
            self._arm(due_ns)

    def _arm(self, at_ns: int) -> None:
        spec = _Itimerspec()
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(at_ns, 1_000_000_000)
        self.libc.timerfd_settime(self.fd, self._TFD_TIMER_ABSTIME, ctypes.byref(spec), None)
        self.armed_ns = at_ns

    def _fire(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass
        self.armed_ns = None
        now = time.monotonic_ns()
        while self.heap and self.heap[0][0] <= now:
            _, _, fn, args = heapq.heappop(self.heap)
            fn(*args)
        if self.heap:
            self._arm(self.heap[0][0])


class _Workers:
    """C virtual workers behind one FIFO queue: a heap of the times (ns) each is free again.

    Requests arrive in order, so the earliest free worker takes the next arrival: FIFO.
    """

    def __init__(self, args, t0_ns: int):
        self.free_ns = [t0_ns] * args.servers
        self.mean_ns = args.service_ms * 1e6
        self.exp = args.service_dist == "exp"
        self.rng = random.Random(args.seed)
        self.warm_end_ns = t0_ns + int(args.warmup_s * 1e9)
        self.warm_factor = args.warmup_factor

    def finish_ns(self, arrival_ns: int) -> int:
        """Take the request arriving now; return when its service ends (ns, monotonic)."""
        start = max(arrival_ns, self.free_ns[0])
        service = self.rng.expovariate(1.0 / self.mean_ns) if self.exp else self.mean_ns
        if start < self.warm_end_ns:
            service *= self.warm_factor
        end = start + int(service)
        heapq.heapreplace(self.free_ns, end)
        return end


class TargetServer:
    def __init__(self, args):
        self.a = args
        self.count = 0
        self.t0 = time.monotonic()
        self.response = self._render(200, BODY, close=False)
        self.delays = _DelayQueue(asyncio.get_running_loop())
        self.t0_ns = time.monotonic_ns()
        self.workers = _Workers(args, self.t0_ns) if args.servers > 0 else None

    def _render(self, status: int, body: bytes, close: bool) -> bytes:
        reason = {200: "OK", 500: "Internal Server Error", 503: "Service Unavailable"}.get(
            status, "Status")
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        if close:
            head += "Connection: close\r\n"
        if self.a.chunked:
            half = len(body) // 2
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c)
                              for c in (body[:half], body[half:]) if c)
            return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def _every(self, n: int) -> bool:
        return n > 0 and self.count % n == 0

    def on_request(self, proto: _Target) -> None:
        self.count += 1
        a = self.a
        if self._every(a.hang_every):
            return
        if self._every(a.reset_every):
            sock = proto.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            proto.transport.abort()
            return
        close = self._every(a.close_every)
        if self._every(a.fail_every):
            payload = self._render(a.fail_status, b'{"error":"injected"}', close)
        elif close:
            payload = self._render(200, BODY, True)
        else:
            payload = self.response
        arrival_ns = time.monotonic_ns()
        due_ns = arrival_ns + int(a.delay_ms * 1e6)
        if self.workers is not None:
            due_ns = self.workers.finish_ns(arrival_ns) + int(a.delay_ms * 1e6)
        now = time.monotonic() - self.t0
        stall_end = self._stall_end(now)
        if stall_end is not None:
            due_ns = max(due_ns, arrival_ns + int((stall_end - now) * 1e9))
        if due_ns > arrival_ns:
            self.delays.push(due_ns, self._send, proto, payload, close)
        else:
            self._send(proto, payload, close)

    def _stall_end(self, now: float) -> float | None:
        a = self.a
        stall_s = a.stall_ms / 1e3
        if stall_s <= 0:
            return None
        if a.stall_every > 0:
            start = (now // a.stall_every) * a.stall_every + a.stall_at
        else:
            start = a.stall_at
        return start + stall_s if start <= now < start + stall_s else None

    @staticmethod
    def _send(proto: _Target, payload: bytes, close: bool) -> None:
        if proto.transport is None:
            return
        proto.transport.write(payload)
        if close:
            proto.transport.close()


EXAMPLES = """\
examples:
  crestline target --port 8080 --delay-ms 5
  crestline target --port 8080 --stall-at 5 --stall-ms 300       # one 300 ms stall at 5 s
  crestline target --port 8080 --fail-every 100 --reset-every 500  # 1% 503s, 0.2% resets
  crestline target --port 0 --servers 4 --service-ms 2 --service-dist exp  # an M/M/4 queue
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crestline target", description=__doc__,
                                epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed)")
    p.add_argument("--delay-ms", type=float, default=0.0, help="delay before every response")
    p.add_argument("--stall-at", type=float, default=0.0,
                   help="seconds after start when a stall begins (with --stall-ms)")
    p.add_argument("--stall-ms", type=float, default=0.0,
                   help="hold every response during the stall window")
    p.add_argument("--stall-every", type=float, default=0.0,
                   help="repeat the stall every this many seconds (0: once)")
    p.add_argument("--fail-every", type=int, default=0, help="every Nth request gets --fail-status")
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--reset-every", type=int, default=0, help="every Nth request: TCP reset")
    p.add_argument("--hang-every", type=int, default=0, help="every Nth request: never answer")
    p.add_argument("--close-every", type=int, default=0,
                   help="every Nth response carries Connection: close")
    p.add_argument("--chunked", action="store_true", help="chunked transfer-encoding")
    p.add_argument("--servers", type=int, default=0,
                   help="C > 0: one FIFO queue served by C workers (0: every request is "
                        "answered on its own after --delay-ms)")
    p.add_argument("--service-ms", type=float, default=2.0,
                   help="mean service time per request of a worker (with --servers)")
    p.add_argument("--service-dist", choices=("const", "exp"), default="const",
                   help="service time distribution (with --servers)")
    p.add_argument("--seed", type=int, default=None, help="seed of --service-dist exp")
    p.add_argument("--warmup-s", type=float, default=0.0,
                   help="service times x --warmup-factor for requests starting in the first "
                        "this many seconds (with --servers)")
    p.add_argument("--warmup-factor", type=float, default=1.0)
    p.add_argument("--max-seconds", type=float, default=3600.0, help="exit after this long")
    return p


async def serve(args) -> None:
    server = TargetServer(args)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: _Target(server), args.host, args.port, backlog=4096)
    host, port = srv.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    try:
        await asyncio.sleep(args.max_seconds)
    finally:
        srv.close()


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.servers < 0:
        parser.error("--servers must be >= 0")
    if args.servers and not args.service_ms > 0:
        parser.error("--service-ms must be > 0")
    if not args.warmup_factor > 0 or args.warmup_s < 0:
        parser.error("--warmup-factor must be > 0 and --warmup-s >= 0")
    import uvloop

    try:
        uvloop.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
