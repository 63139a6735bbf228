"""The bundled demo model server (`crestline.servers.demo`) on real loopback sockets.

Each server runs in its own process, as a model server would, so the test client never
shares its GIL. Latency checks compare medians with generous ratios: the machine is shared.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time

import numpy as np
import pytest
from servers import Target, stopped_at_teardown

from crestline.servers.demo import RankerModel, warmup_multiplier
from crestline.servers.demo_requests import (
    DIM,
    INFER_PATH,
    draw_candidate_counts,
    make_request_body,
    parse_infer,
    write_demo_trace,
)
from crestline.trace.format import read_trace

SEED = 7


class DemoServer(Target):
    def __init__(self, *flags: str, max_seconds: float = 60.0):
        super().__init__("--seed", str(SEED), *flags, max_seconds=max_seconds,
                         module="crestline.servers.demo")

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=10)


@pytest.fixture(scope="module")
def server():
    s = DemoServer("--warmup-s", "0")
    yield s
    s.stop()


@pytest.fixture
def demo_server():
    """Factory: demo_server('--warmup-s', '2') -> a DemoServer of its own, stopped at teardown."""
    yield from stopped_at_teardown(DemoServer)


def call(conn, method: str, path: str, body: bytes | None = None):
    conn.request(method, path, body, {"Content-Type": "application/json"} if body else {})
    r = conn.getresponse()
    data = r.read()
    assert r.getheader("Content-Length") == str(len(data))
    return r.status, (json.loads(data) if data else None)


def reference_scores(body: bytes) -> np.ndarray:
    """The ranker computed here in float64 from the same seeded weights."""
    user, cands, _, _ = parse_infer(body)
    m = RankerModel(SEED)
    u = np.broadcast_to(user, cands.shape).astype(np.float64)
    c = cands.astype(np.float64)
    h = np.concatenate([u, c, u * c, np.abs(u - c)], axis=1)
    for k, (w, b) in enumerate(zip(m.weights, m.biases, strict=True)):
        h = h @ w.astype(np.float64) + b
        if k < len(m.weights) - 1:
            h = np.maximum(h, 0.0)
    return h[:, 0]


def test_ready_and_metadata(server):
    c = server.conn()
    assert call(c, "GET", "/v2/health/ready") == (200, None)
    status, meta = call(c, "GET", "/v2/models/ranker")
    assert status == 200 and meta["name"] == "ranker" and meta["platform"]
    assert meta["inputs"] == [{"name": "user", "datatype": "FP32", "shape": [1, DIM]},
                              {"name": "candidates", "datatype": "FP32", "shape": [-1, DIM]}]
    assert meta["outputs"] == [{"name": "scores", "datatype": "FP32", "shape": [-1]}]


def test_inference_matches_the_model_computed_here(server):
    body = make_request_body(37, DIM, np.random.default_rng(1))
    status, out = call(server.conn(), "POST", INFER_PATH, body)
    assert status == 200 and out["model_name"] == "ranker"
    [scores] = out["outputs"]
    assert scores["name"] == "scores" and scores["datatype"] == "FP32"
    assert scores["shape"] == [37]
    np.testing.assert_allclose(scores["data"], reference_scores(body), rtol=1e-4, atol=1e-4)


def test_top_k_returns_the_best_scores_and_their_indices(server):
    body = make_request_body(50, DIM, np.random.default_rng(2), top_k=5)
    status, out = call(server.conn(), "POST", INFER_PATH, body)
    assert status == 200
    named = {o["name"]: o for o in out["outputs"]}
    assert named["scores"]["shape"] == named["indices"]["shape"] == [5]
    assert named["indices"]["datatype"] == "INT64"
    ref = reference_scores(body)
    assert named["indices"]["data"] == np.argsort(-ref)[:5].tolist()
    np.testing.assert_allclose(named["scores"]["data"], np.sort(ref)[::-1][:5], rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("body, says", [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "inputs"),
    (json.dumps({"inputs": [{"name": "user", "shape": [1, DIM], "datatype": "FP32",
                             "data": [0.0] * DIM}]}).encode(), "missing input 'candidates'"),
    (json.dumps({"inputs": [{"name": "items", "shape": [1, DIM], "datatype": "FP32",
                             "data": [0.0] * DIM}]}).encode(), "unknown input 'items'"),
    (make_request_body(4, DIM, np.random.default_rng(3)).replace(b"[4,32]", b"[4,16]"),
     "32 columns"),
    (make_request_body(4, DIM, np.random.default_rng(3)).replace(b"[4,32]", b"[5,32]"),
     "needs 160 values, data has 128"),
    (make_request_body(4, DIM, np.random.default_rng(3)).replace(b'"FP32"', b'"INT8"', 1),
     "datatype must be FP32"),
    (make_request_body(4, DIM, np.random.default_rng(3), top_k=0), "top_k"),
])
def test_bad_requests_are_400_naming_the_problem(server, body, says):
    status, out = call(server.conn(), "POST", INFER_PATH, body)
    assert status == 400 and says in out["error"], out


def test_unknown_path_is_404_and_wrong_method_405(server):
    c = server.conn()
    status, out = call(c, "GET", "/v2/models/other")
    assert status == 404 and "/v2/models/other" in out["error"]
    status, out = call(c, "GET", INFER_PATH)
    assert status == 405 and "POST" in out["error"]


def test_keep_alive_and_pipelining_on_one_connection(server):
    c = server.conn()
    for n in (3, 30, 300):
        status, out = call(c, "POST", INFER_PATH, make_request_body(n, DIM))
        assert status == 200 and out["outputs"][0]["shape"] == [n]
        if n == 3:
            sock = c.sock
        assert c.sock is sock  # the same socket: the server kept the connection open
    # Pipelined: the big request finishes last on a worker, yet its answer comes back first.
    sizes = (400, 2, 1)
    raw = b"".join(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                   % (INFER_PATH.encode(), len(b), b)
                   for b in (make_request_body(n, DIM) for n in sizes))
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(raw)
        f = s.makefile("rb")
        for n in sizes:
            assert f.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := f.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert json.loads(f.read(length))["outputs"][0]["shape"] == [n]


def median_latency_s(conn, body: bytes, count: int) -> float:
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        status, _ = call(conn, "POST", INFER_PATH, body)
        times.append(time.perf_counter() - t0)
        assert status == 200
    return float(np.median(times))


def test_cost_grows_with_the_number_of_candidates(server):
    c = server.conn()
    rng = np.random.default_rng(4)
    small = median_latency_s(c, make_request_body(10, DIM, rng), 60)
    large = median_latency_s(c, make_request_body(400, DIM, rng), 60)
    assert large > 2.5 * small, (small, large)  # ~6x on the development machine


def test_warm_up_makes_early_requests_slower(demo_server):
    s = demo_server("--warmup-s", "2", "--warmup-factor", "20")
    c = s.conn()
    body = make_request_body(100, DIM, np.random.default_rng(5))
    early = median_latency_s(c, body, 15)  # starts the warm-up clock
    time.sleep(max(0.0, 2.2 - early * 15))
    late = median_latency_s(c, body, 15)
    assert early > 3 * late, (early, late)  # ~10x expected


def test_batching_serves_each_request_its_own_scores(demo_server):
    s = demo_server("--warmup-s", "0", "--workers", "1", "--max-batch", "8",
                    "--batch-timeout-ms", "5")
    bodies = [make_request_body(n, DIM, np.random.default_rng(n)) for n in (1, 7, 20, 64)]
    results: dict[int, tuple] = {}

    def client(i: int) -> None:
        results[i] = call(s.conn(), "POST", INFER_PATH, bodies[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    for i, body in enumerate(bodies):
        status, out = results[i]
        assert status == 200
        np.testing.assert_allclose(out["outputs"][0]["data"], reference_scores(body),
                                   rtol=1e-4, atol=1e-4)


def test_sigterm_stops_cleanly(demo_server):
    s = demo_server("--warmup-s", "0")
    assert call(s.conn(), "GET", "/v2/health/live")[0] == 200
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=10) == 0


def test_warmup_multiplier_decays_linearly():
    assert warmup_multiplier(0.0, 10.0, 3.0) == 3.0
    assert warmup_multiplier(5.0, 10.0, 3.0) == pytest.approx(2.0)
    assert warmup_multiplier(10.0, 10.0, 3.0) == 1.0
    assert warmup_multiplier(0.0, 0.0, 3.0) == 1.0


def test_demo_trace_round_trips_and_is_servable(server, tmp_path):
    path = tmp_path / "demo.cltrace"
    assert write_demo_trace(path, 80, seed=3, mean_rate_rps=200.0) == 80
    trace = read_trace(path)
    assert trace.count == 80 and trace.header["source"] == "demo:ranker"
    offsets = trace.offsets_ns
    assert offsets[0] == 0 and np.all(np.diff(offsets) >= 0)
    assert 100 < 79 / trace.duration_s < 400  # Poisson at 200 rps, loosely
    for rec in trace.records:
        user, cands, _, _ = parse_infer(rec.body)
        assert rec.method == "POST" and rec.path == INFER_PATH
        assert ("Content-Type", "application/json") in rec.headers
        assert rec.extras == {"model": "ranker", "n_candidates": len(cands)}
        assert 10 <= len(cands) <= 400 and user.shape == (1, DIM)
    again = tmp_path / "again.cltrace"
    write_demo_trace(again, 80, seed=3, mean_rate_rps=200.0)
    assert [r.body for r in read_trace(again).records] == [r.body for r in trace.records]
    status, out = call(server.conn(), "POST", INFER_PATH, trace.records[0].body)
    assert status == 200 and out["outputs"][0]["shape"] == [trace.records[0].extras[
        "n_candidates"]]


def test_candidate_counts_are_skewed():
    n = draw_candidate_counts(20_000, np.random.default_rng(0))
    assert n.min() == 10 and n.max() == 400
    assert np.median(n) == pytest.approx(50, abs=3)
    assert 0.2 < np.mean(n <= 30) < 0.4 and 0.03 < np.mean(n >= 200) < 0.1
