#!/usr/bin/env python3
"""A CPU-bound HTTP/1.1 target for bench/verdict_bench.py: every request does real CPU work.

Each request runs `--work-ms` of numpy matrix products (single-threaded BLAS, GIL released)
on one of `--threads` workers, so under load the server's work competes for the same cores as
the client that loads it. There is no sleep anywhere: the latency a client sees is queueing
for a worker, for a core and for the GIL (HTTP parsing in the handler threads holds it).

The work per request is calibrated at start: the number of 256x256 float64 products whose
thread CPU time is `--work-ms`, measured on an idle process (median of 30 tries).

    python bench/targets/cpu_server.py --port 0 --threads 4 --work-ms 5
    # prints "listening on 127.0.0.1:PORT" once it accepts connections

GET or POST any path: 200 with a 2-byte body. Stops on SIGTERM / SIGINT or `--max-seconds`.
"""

from __future__ import annotations

import argparse
import os

# One BLAS thread per worker: otherwise OpenBLAS spawns a pool per core and the work is no
# longer "4 workers". Must be set before numpy is imported.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

import numpy as np  # noqa: E402

DIM = 256


def _work(a: np.ndarray, n: int) -> float:
    x = a
    for _ in range(n):
        x = np.tanh(x @ a * (1.0 / DIM))
    return float(x[0, 0])


def calibrate(work_ms: float, a: np.ndarray) -> int:
    """The number of products whose thread CPU time is about work_ms (median of 30 tries)."""
    _work(a, 50)
    per = []
    for _ in range(30):
        t0 = time.thread_time_ns()
        _work(a, 20)
        per.append((time.thread_time_ns() - t0) / 20)
    return max(1, round(work_ms * 1e6 / statistics.median(per)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    p.add_argument("--threads", type=int, default=4, help="workers doing the CPU work")
    p.add_argument("--work-ms", type=float, default=5.0, help="CPU time per request")
    p.add_argument("--max-seconds", type=float, default=0.0, help="exit after this long")
    args = p.parse_args(argv)

    a = np.random.default_rng(0).standard_normal((DIM, DIM))
    n_products = calibrate(args.work_ms, a)
    workers = threading.BoundedSemaphore(args.threads)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle holds the body
        # until the client's delayed ACK (~40 ms) and every latency has that floor.
        disable_nagle_algorithm = True

        def _serve(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            with workers:
                _work(a, n_products)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = do_POST = _serve

        def log_message(self, *args):  # no access log
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    host, port = srv.server_address[:2]

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.max_seconds > 0:
        threading.Timer(args.max_seconds, stop).start()
    print(f"calibrated: {n_products} products of {DIM}x{DIM} = {args.work_ms:g} ms CPU, "
          f"{args.threads} workers", flush=True)
    print(f"listening on {host}:{port}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
