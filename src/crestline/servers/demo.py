"""A small real model server to point crestline at: a numpy ranking MLP behind KServe v2 JSON.

`crestline demo-server` (or `python -m crestline.servers.demo --port 0`) serves the model
`ranker`: it scores N candidate items for one user. Inputs `user` FP32 [1, D] and
`candidates` FP32 [N, D] (D = 32); features [u, c, u*c, |u-c|] per candidate go through two
ReLU layers (512, 512) to one score each. Weights are fixed random numbers from `--seed`.

    POST /v2/models/ranker/infer   {"inputs": [{"name": "user", "shape": [1, 32],
                                    "datatype": "FP32", "data": [...]}, {"name": "candidates",
                                    "shape": [N, 32], ...}], "parameters": {"top_k": 10}}
    GET  /v2/models/ranker         metadata
    GET  /v2/health/ready          200 once the model is loaded (also /v2/health/live)

It behaves like a real Python model server: JSON is parsed on the event loop (holding the
GIL), the forward pass runs on `--workers` threads behind one FIFO queue (numpy releases the
GIL), optionally with dynamic batching (`--max-batch`, `--batch-timeout-ms`). For the first
`--warmup-s` seconds after the first inference, every forward pass costs up to
`--warmup-factor` times more, decaying linearly to 1, like JIT compilation and cold caches.
The wire format (bodies, parsing, responses, payload-mix traces) is
`crestline.servers.demo_requests`.

Measured on the 2-vCPU development VM (Intel Xeon; OpenBLAS held to one thread per worker),
idle otherwise. CPU ms per request: in-process (parse + forward + encode), and in the server
process over one keep-alive connection (adds the HTTP and thread hand-offs, ~0.3 ms):

    N candidates            10     50     100    200    400
    in-process CPU ms       0.22   0.58   1.00   1.84   3.5    (forward alone: 0.57 at 100)
    server CPU ms           0.52   0.90   1.30   2.10   3.8    (median latency 1.4 at 100)

Capacity, defaults (2 workers, no batching), Poisson arrivals, a 4 s run per rate, the
client on the same 2 cores. The server tops out near 1.2 cores: JSON parsing and the Python
around each forward pass share one GIL, which caps throughput before the cores do.

    p99 (ms) at rate (rps)    400   600   800   900   1000  1100  1150  1200  saturates
    fixed N=100 body          5.9   11    16    32    74    -     -     -     ~1030 rps
    mixed trace (10..400)     6.0   8.6   15    16    17    32    48    83    ~1250 rps

`crestline search --slo p99=50ms` found 938 rps for the fixed N=100 body (constant arrivals,
`--start-rate 150 --step-duration 3s`: 10 steps, 63 s) and 1124 rps for the mixed trace
(`--trace FILE --arrival poisson --start-rate 300 --step-duration 5s`: 11 steps, 107 s,
warm-up found at 10 s); `crestline demo` found 985 and 1,069 rps on the mixed trace. With
other load on the two cores, capacity falls to 700..800 rps and steps turn invalid (the
client falls behind its schedule).

    python -m crestline.servers.demo_requests body 100 > req.json
    crestline search http://127.0.0.1:8000/v2/models/ranker/infer --method POST \\
        -H 'Content-Type: application/json' --body @req.json --slo p99=50ms --warmup auto
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import queue
import sys
import threading
import time
from collections import deque

import numpy as np

from crestline.servers.demo_requests import (
    DIM,
    INFER_PATH,
    MODEL_NAME,
    BadRequest,
    encode_response,
    parse_infer,
)
from crestline.servers.http import BodyRequestProtocol, serve_until_stopped

HIDDEN = (512, 512)
MAX_BODY_BYTES = 64 << 20
_READY_PATHS = (b"/v2/health/ready", b"/v2/health/live", f"/v2/models/{MODEL_NAME}/ready".encode())
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Content Too Large", 500: "Internal Server Error"}


class RankerModel:
    """The ranking MLP: fixed weights drawn from `seed`, so any process can rebuild it."""

    def __init__(self, seed: int = 0, dim: int = DIM, hidden: tuple[int, int] = HIDDEN):
        rng = np.random.default_rng(seed)
        sizes = (4 * dim, *hidden, 1)
        # He initialisation keeps ReLU activations (and so the scores) of order one.
        self.weights = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
                        for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        self.biases = [(0.1 * rng.standard_normal(b)).astype(np.float32) for b in sizes[1:]]
        self.dim = dim

    def score(self, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Scores (float32 [N]) of `candidates` [N, D] for `users`, [1, D] or one row each."""
        u = np.broadcast_to(users, candidates.shape)
        h = np.concatenate([u, candidates, u * candidates, np.abs(u - candidates)], axis=1)
        (w1, w2, w3), (b1, b2, b3) = self.weights, self.biases
        h = np.maximum(h @ w1 + b1, 0.0)
        h = np.maximum(h @ w2 + b2, 0.0)
        return (h @ w3 + b3)[:, 0]

    def metadata(self) -> dict:
        """The KServe v2 model metadata document."""
        d = self.dim
        return {"name": MODEL_NAME, "versions": ["1"], "platform": "numpy_mlp",
                "inputs": [{"name": "user", "datatype": "FP32", "shape": [1, d]},
                           {"name": "candidates", "datatype": "FP32", "shape": [-1, d]}],
                "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1]}]}


def warmup_multiplier(elapsed_s: float, warmup_s: float, factor: float) -> float:
    """Cost multiplier `elapsed_s` after warm-up began: `factor` falling linearly to 1 at
    `warmup_s` (1 throughout when `warmup_s` <= 0)."""
    if warmup_s <= 0 or elapsed_s >= warmup_s:
        return 1.0
    return factor + (1.0 - factor) * max(elapsed_s, 0.0) / warmup_s


def render(status: int, body: bytes, keep_alive: bool = True) -> bytes:
    """One HTTP/1.1 response with a Content-Length body."""
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
    if not keep_alive:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode() + body


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class _Job:
    __slots__ = ("user", "candidates", "top_k", "req_id", "reply")

    def __init__(self, user, candidates, top_k, req_id, reply):
        self.user, self.candidates, self.top_k, self.req_id = user, candidates, top_k, req_id
        self.reply = reply  # thread-safe: reply(status, body)


class ModelWorkers:
    """`workers` threads serving one FIFO queue of jobs, each forward pass on one batch of up to
    `max_batch` jobs (their candidates stacked), waiting at most `batch_timeout_s` to fill it."""

    def __init__(self, model: RankerModel, workers: int, max_batch: int = 1,
                 batch_timeout_s: float = 0.0, warmup_s: float = 0.0, warmup_factor: float = 1.0):
        self.model, self.max_batch, self.batch_timeout_s = model, max_batch, batch_timeout_s
        self.warmup_s, self.warmup_factor = warmup_s, warmup_factor
        self.warm_start_s: float | None = None
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._run, name=f"model-{i}", daemon=True)
                        for i in range(workers)]
        for t in self.threads:
            t.start()

    def submit(self, job: _Job) -> None:
        # Warm-up starts with the first inference, not at process start, so a search started
        # a while after the server still meets a cold model, as it would after a deploy.
        if self.warm_start_s is None:
            self.warm_start_s = time.monotonic()
        self.queue.put(job)

    def stop(self, timeout_s: float = 5.0) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join(timeout_s)

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            batch = [job]
            deadline = time.monotonic() + self.batch_timeout_s
            while len(batch) < self.max_batch:
                try:
                    nxt = self.queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if nxt is None:
                    self.queue.put(None)  # this thread's stop: seen after this batch
                    break
                batch.append(nxt)
            self._infer(batch)

    def _infer(self, batch: list[_Job]) -> None:
        try:
            counts = [len(j.candidates) for j in batch]
            if len(batch) == 1:
                users, cands = batch[0].user, batch[0].candidates
            else:
                users = np.repeat(np.concatenate([j.user for j in batch]), counts, axis=0)
                cands = np.concatenate([j.candidates for j in batch])
            scores = self.model.score(users, cands)
            extra = warmup_multiplier(time.monotonic() - self.warm_start_s, self.warmup_s,
                                      self.warmup_factor) - 1.0
            if extra > 0:
                self._burn(users, cands, extra)
            for j, s in zip(batch, np.split(scores, np.cumsum(counts)[:-1]), strict=True):
                j.reply(200, encode_response(s, j.top_k, j.req_id))
        except Exception as exc:  # a worker never dies: the batch fails, the next one runs
            for j in batch:
                j.reply(500, _error(f"inference failed: {type(exc).__name__}: {exc}"))

    def _burn(self, users: np.ndarray, cands: np.ndarray, extra: float) -> None:
        # Real forward passes, not sleeps: a cold model costs CPU, which is what lowers capacity.
        for _ in range(int(extra)):
            self.model.score(users, cands)
        rows = round((extra - int(extra)) * len(cands))
        if rows:
            self.model.score(users[:rows], cands[:rows])


class _Conn(BodyRequestProtocol):
    """One HTTP/1.1 connection; responses leave in request order even when workers finish
    pipelined requests out of order."""

    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, server: DemoServer):
        super().__init__()
        self.server = server
        self.slots: deque[list] = deque()  # [payload or None, keep_alive] per request

    def bad_request(self) -> bytes:
        return render(400, _error("malformed HTTP request"), False)

    def on_message_complete(self):
        slot = [None, self.parser.should_keep_alive()]
        self.slots.append(slot)
        self.server.handle(self, slot, self.parser.get_method(), self.url.split(b"?", 1)[0])

    def respond(self, slot: list, status: int, body: bytes) -> None:
        slot[0] = render(status, body, slot[1])
        while self.slots and self.slots[0][0] is not None and self.transport is not None:
            payload, keep_alive = self.slots.popleft()
            self.transport.write(payload)
            if not keep_alive:
                self.transport.close()
                return


class DemoServer:
    """Routes requests: health and metadata answered on the loop, inference to the workers."""

    def __init__(self, args, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.model = RankerModel(args.seed)
        self.metadata = json.dumps(self.model.metadata()).encode()
        self.workers = ModelWorkers(self.model, args.workers, args.max_batch,
                                    args.batch_timeout_ms / 1e3, args.warmup_s,
                                    args.warmup_factor)

    def handle(self, conn: _Conn, slot: list, method: bytes, path: bytes) -> None:
        if path == INFER_PATH.encode():
            if method != b"POST":
                return conn.respond(slot, 405, _error(f"use POST for {INFER_PATH}"))
            if conn.body_bytes > MAX_BODY_BYTES:
                return conn.respond(slot, 413, _error(f"body over {MAX_BODY_BYTES} bytes"))
            try:
                user, cands, top_k, req_id = parse_infer(b"".join(conn.body), self.model.dim)
            except BadRequest as exc:
                return conn.respond(slot, 400, _error(str(exc)))

            def reply(status: int, body: bytes) -> None:
                self.loop.call_soon_threadsafe(conn.respond, slot, status, body)

            return self.workers.submit(_Job(user, cands, top_k, req_id, reply))
        if method != b"GET":
            conn.respond(slot, 405 if path in _READY_PATHS else 404,
                         _error(f"no {method.decode()} route for {path.decode()}"))
        elif path in _READY_PATHS:
            conn.respond(slot, 200, b"")
        elif path == f"/v2/models/{MODEL_NAME}".encode():
            conn.respond(slot, 200, self.metadata)
        elif path == b"/v2":
            conn.respond(slot, 200, b'{"name":"crestline-demo","version":"1","extensions":[]}')
        else:
            conn.respond(slot, 404, _error(f"unknown path {path.decode(errors='replace')}: "
                                           f"try POST {INFER_PATH}"))


def _one_blas_thread() -> None:
    """Each model worker is one intra-op thread, as servers are configured under load; an
    OpenBLAS pool on top would oversubscribe the cores and spin. numpy is already loaded, so
    the environment variable comes too late: ask the loaded library directly."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "openblas" in line.lower()}
    for path in libs:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(1)
                break


EXAMPLES = """\
examples:
  crestline demo-server --port 8000
  crestline demo-server --port 8000 --workers 4 --max-batch 8 --batch-timeout-ms 2
  crestline demo-server --port 0 --warmup-s 0        # no warm-up; prints the port it took
  python -m crestline.servers.demo_requests body 100 > req.json
  crestline run http://127.0.0.1:8000/v2/models/ranker/infer --method POST \\
      -H 'Content-Type: application/json' --body @req.json --rate 300
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crestline demo-server", description=__doc__,
                                epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--workers", type=int, default=2, help="model worker threads (default 2)")
    p.add_argument("--max-batch", type=int, default=1,
                   help="dynamic batching: up to this many queued requests per forward pass "
                        "(default 1: off)")
    p.add_argument("--batch-timeout-ms", type=float, default=1.0,
                   help="with --max-batch: wait at most this long to fill a batch (default 1)")
    p.add_argument("--warmup-s", type=float, default=10.0,
                   help="warm-up after the first inference: forward passes cost more for this "
                        "long (default 10; 0: none)")
    p.add_argument("--warmup-factor", type=float, default=3.0,
                   help="cost multiplier at the start of warm-up, falling linearly to 1 "
                        "(default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model's weights")
    p.add_argument("--max-seconds", type=float, default=None, help="exit after this long")
    return p


async def serve(args) -> None:
    """Serve until SIGTERM/SIGINT or `args.max_seconds`, printing `listening on HOST:PORT`."""
    server = DemoServer(args, asyncio.get_running_loop())
    try:
        await serve_until_stopped(lambda: _Conn(server), args.host, args.port, args.max_seconds)
    finally:
        server.workers.stop()


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1 or args.max_batch < 1:
        parser.error("--workers and --max-batch must be >= 1")
    if args.batch_timeout_ms < 0 or args.warmup_s < 0 or not args.warmup_factor >= 1:
        parser.error("--batch-timeout-ms and --warmup-s must be >= 0, --warmup-factor >= 1")
    if args.max_seconds is not None and not args.max_seconds > 0:
        parser.error("--max-seconds must be > 0")
    _one_blas_thread()
    import uvloop

    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
