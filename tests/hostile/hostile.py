"""Hostile HTTP/1.1 servers on 127.0.0.1:0: each one misbehaves in one way people meet in the
wild (docs/failure-modes.md lists them with what crestline counts).

Plain blocking sockets, one thread per connection: the behaviour is the whole point, so each
is a short function over a socket, written as a server would (mis)behave. The load test process
is the client; everything stops at close() or when the test process ends (daemon threads).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def read_request(conn: socket.socket) -> bool:
    """Read one bodiless request (up to its blank line); False when the client closed."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        buf += chunk
    return True


def hold(conn: socket.socket) -> None:
    """Keep the connection open, reading and ignoring, until the client goes."""
    while conn.recv(65536):
        pass


def reset(conn: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER 0)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


# -- the behaviours: conn -> None, one call per accepted connection --------------------------

def answering(raw: bytes, then: Callable[[socket.socket], None] | None = None):
    """Answer every request with raw; then(conn) after the first answer ends the service
    of that connection (hold, close, reset); None: keep-alive."""
    def serve(conn):
        while read_request(conn):
            conn.sendall(raw)
            if then is not None:
                then(conn)
                return
    return serve


def close(conn: socket.socket) -> None:
    conn.close()


def slowloris(conn):
    """A valid response, one byte a second."""
    if read_request(conn):
        for b in OK:
            conn.sendall(bytes([b]))
            time.sleep(1.0)


def reset_mid_body(conn):
    if read_request(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
        time.sleep(0.05)
        reset(conn)


def huge_body(size_bytes: int):
    def serve(conn):
        block = memoryview(bytes(1 << 20))
        while read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size_bytes)
            left = size_bytes
            while left:
                n = min(left, len(block))
                conn.sendall(block[:n])
                left -= n
    return serve


def continue_then_ok(conn):
    """100 Continue, a pause (so the two often arrive in separate reads), then 200."""
    while read_request(conn):
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        time.sleep(0.001)
        conn.sendall(OK)


def silent(conn):
    """Accept, read the request, never answer."""
    hold(conn)


_SHORT_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"
_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
garbage_status = answering(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe garbage\r\n\r\n", hold)
length_longer_then_close = answering(_SHORT_BODY, close)
length_longer_then_hold = answering(_SHORT_BODY, hold)
# Content-Length 2, then more body than that, in the same write
length_shorter = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok and then more")
# a chunk that says 2 bytes and carries 11
chunk_size_too_small = answering(_CHUNKED + b"2\r\nhello world\r\n0\r\n\r\n")
# a chunk that says 255 bytes and carries 5, then the last-chunk: the parser takes the
# terminator as data and waits for the rest
chunk_size_too_large = answering(_CHUNKED + b"ff\r\nhello\r\n0\r\n\r\n")
continue_then_nothing = answering(b"HTTP/1.1 100 Continue\r\n\r\n", hold)
# keep-alive by the headers (no Connection: close), closed by the socket
close_after_every_response = answering(OK, close)
# no Content-Length, no chunked: the body ends when the connection does
close_delimited = answering(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body", close)


def answer_before_request(conn):
    """Answer at accept, before any request arrives, and close (a 408 as some front ends
    send)."""
    conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    conn.close()


class HostileServer:
    """One listener on 127.0.0.1:0 running `behaviour` per connection. accept=False: listen
    with `backlog` and never accept (a server that stopped accepting: the queue fills)."""

    def __init__(self, behaviour: Callable[[socket.socket], None] | None, *,
                 backlog: int = 128, accept: bool = True):
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.conns: list[socket.socket] = []
        self.accepted = 0
        self._closed = False
        if accept:
            threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self.behaviour(conn)
        except OSError:
            pass  # the client went away: that is its right
        finally:
            conn.close()

    def close(self):
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def run_measured(argv: list[str], timeout_s: float,
                 preexec: Callable[[], None] | None = None) -> dict:
    """`crestline ARGV` in a child process: its exit code, output, wall time and peak RSS
    (the kernel's ru_maxrss of that one child, via wait4), killed at timeout_s."""
    out_path = f"/tmp/crestline-hostile-{os.getpid()}-{time.monotonic_ns()}"
    with open(out_path + ".out", "w+") as out, open(out_path + ".err", "w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "crestline.cli", *map(str, argv)],
                                stdout=out, stderr=err, preexec_fn=preexec)
        killer = threading.Timer(timeout_s, lambda: os.kill(proc.pid, signal.SIGKILL))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall_s = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        d = {"rc": proc.returncode, "stdout": out.read(), "stderr": err.read(), "wall_s": wall_s,
             "max_rss_mb": usage.ru_maxrss / 1024}
    for suffix in (".out", ".err"):
        os.unlink(out_path + suffix)
    return d

