"""A loopback HTTPS (HTTP/1.1 keep-alive) server for the TLS tests, in its own process.

    python tests/tls_server.py --port 0 --cert C --key K [--client-ca CA] [--log FILE]
        [--handshake-delay-ms MS]

Prints "listening on HOST:PORT"; answers every request 200 with a small body. --client-ca
requires a client certificate signed by that CA (mTLS). --log gets one line per handshake:
the SNI name the client sent and the ALPN protocol chosen. --handshake-delay-ms holds each
new connection that long before answering its ClientHello (a slow TLS terminator).

Blocking sockets, a thread per connection: OpenSSL then writes its alerts (certificate
required, ...) straight to the socket before closing, as OpenSSL-based servers such as nginx
do; an asyncio server can drop them on a failed handshake.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import threading
import time

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def context(a) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.set_alpn_protocols(["http/1.1"])
    if a.client_ca:
        ctx.load_verify_locations(a.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED

    def on_sni(obj, name, _ctx):
        obj.sni = name  # read back after the handshake, for the log

    ctx.sni_callback = on_sni
    return ctx


def serve_one(ctx, sock, log, lock, delay_s=0.0) -> None:
    time.sleep(delay_s)
    try:
        with ctx.wrap_socket(sock, server_side=True) as tls:
            if log is not None:
                with lock:
                    log.write(f"sni={getattr(tls, 'sni', None)} "
                              f"alpn={tls.selected_alpn_protocol()}\n")
                    log.flush()
            buf = b""
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    data = tls.recv(65536)
                    if not data:
                        return
                    buf += data
                    continue
                head = buf[:head_end].lower()
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                while len(buf) < head_end + 4 + length:
                    data = tls.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[head_end + 4 + length:]
                tls.sendall(RESPONSE)
    except (ssl.SSLError, OSError):
        pass  # a refused handshake (the test's point) or the client going away


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-ca", default=None)
    p.add_argument("--log", default=None)
    p.add_argument("--handshake-delay-ms", type=float, default=0.0)
    a = p.parse_args()
    ctx = context(a)
    log = open(a.log, "a") if a.log else None
    lock = threading.Lock()
    ls = socket.socket()
    ls.bind(("127.0.0.1", a.port))
    ls.listen(256)
    ls.settimeout(0.5)
    host, port = ls.getsockname()
    print(f"listening on {host}:{port}", flush=True)
    end = time.monotonic() + a.max_seconds
    while time.monotonic() < end:
        try:
            sock, _ = ls.accept()
        except TimeoutError:
            continue
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve_one, daemon=True,
                         args=(ctx, sock, log, lock, a.handshake_delay_ms / 1e3)).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
