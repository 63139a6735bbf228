"""The demo ranker's KServe v2 JSON (`crestline.servers.demo`): request bodies and their
parsing, responses, and traces of a realistic payload mix. Pure: numpy, json, the trace writer.

A real ranking service sees a skewed payload mix: most requests score a few dozen
candidates, a few score hundreds. `write_demo_trace` records such a mix as a `.cltrace`, so a
search can keep it at any rate (`--trace FILE --arrival poisson`):

    python -m crestline.servers.demo_requests body 100 > req.json
    python -m crestline.servers.demo_requests trace demo.cltrace --count 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from crestline.trace.format import TraceRecord, TraceWriter

MODEL_NAME = "ranker"
DIM = 32
MAX_CANDIDATES = 4096
INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"

# Candidates per request: log-normal, median 50, clipped to 10..400. About 30% of requests
# carry <= 30 candidates and 6% carry >= 200, so the by-size classes of a search differ.
MEDIAN_CANDIDATES = 50
SIGMA_CANDIDATES = 0.9
MIX_MIN_CANDIDATES, MIX_MAX_CANDIDATES = 10, 400


class BadRequest(ValueError):
    """The client's request cannot be served; the message names the problem (HTTP 400)."""


def parse_infer(body: bytes, dim: int = DIM) -> tuple[np.ndarray, np.ndarray, int | None, object]:
    """Decode a v2 infer request: (user [1, D], candidates [N, D], top_k or None, id or None).
    Raises BadRequest naming the problem."""
    try:
        req = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list):
        raise BadRequest('the body must be a JSON object with an "inputs" list')
    tensors: dict[str, np.ndarray] = {}
    for i, t in enumerate(req["inputs"]):
        name = t.get("name") if isinstance(t, dict) else None
        if name not in ("user", "candidates"):
            raise BadRequest(f'inputs[{i}]: unknown input {name!r}: expected "user" and '
                             f'"candidates"')
        if name in tensors:
            raise BadRequest(f"input {name!r} given twice")
        if t.get("datatype") != "FP32":
            raise BadRequest(f"input {name!r}: datatype must be FP32, got {t.get('datatype')!r}")
        shape = t.get("shape")
        if (not isinstance(shape, list) or len(shape) != 2
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)):
            raise BadRequest(f"input {name!r}: shape must be [rows, {dim}], got {shape!r}")
        rows, cols = shape
        if cols != dim:
            raise BadRequest(f"input {name!r}: shape {shape} must have {dim} columns")
        if not 1 <= rows <= (1 if name == "user" else MAX_CANDIDATES):
            raise BadRequest(f"input {name!r}: shape {shape} must have 1 to "
                             f"{1 if name == 'user' else MAX_CANDIDATES} rows")
        data = t.get("data")
        if not isinstance(data, list):
            raise BadRequest(f"input {name!r}: data must be a list of numbers")
        try:
            arr = np.asarray(data, dtype=np.float32)
        except (TypeError, ValueError):
            raise BadRequest(f"input {name!r}: data must hold only numbers") from None
        if arr.size != rows * cols:
            raise BadRequest(f"input {name!r}: shape {shape} needs {rows * cols} values, "
                             f"data has {arr.size}")
        if not np.isfinite(arr).all():
            raise BadRequest(f"input {name!r}: data holds NaN or infinity")
        tensors[name] = arr.reshape(rows, cols)
    missing = {"user", "candidates"} - tensors.keys()
    if missing:
        raise BadRequest(f"missing input {sorted(missing)[0]!r}")
    params = req.get("parameters") or {}
    top_k = params.get("top_k") if isinstance(params, dict) else None
    if top_k is not None and (type(top_k) is not int or top_k < 1):
        raise BadRequest(f"parameters.top_k must be an integer >= 1, got {top_k!r}")
    return tensors["user"], tensors["candidates"], top_k, req.get("id")


def encode_response(scores: np.ndarray, top_k: int | None, req_id: object = None) -> bytes:
    """The v2 infer response: all `scores`, or the best `top_k` (descending) and `indices`."""
    best = None if top_k is None else np.argsort(-scores, kind="stable")[:top_k]
    tensors = [("scores", "FP32", scores if best is None else scores[best])]
    if best is not None:
        tensors.append(("indices", "INT64", best))
    doc = {"model_name": MODEL_NAME, "model_version": "1",
           "outputs": [{"name": n, "shape": [len(a)], "datatype": t, "data": a.tolist()}
                       for n, t, a in tensors]}
    if req_id is not None:
        doc["id"] = req_id
    return json.dumps(doc, separators=(",", ":")).encode()


def make_request_body(n_candidates: int, dim: int = DIM,
                      rng: np.random.Generator | None = None, top_k: int | None = None) -> bytes:
    """A v2 infer request body (JSON bytes) for one user and `n_candidates` random candidates
    of `dim` features each, rounded to 3 decimals as a client would send them."""
    rng = rng if rng is not None else np.random.default_rng()
    user = np.round(rng.standard_normal(dim), 3)
    cands = np.round(rng.standard_normal(n_candidates * dim), 3)
    doc: dict = {"inputs": [
        {"name": "user", "shape": [1, dim], "datatype": "FP32", "data": user.tolist()},
        {"name": "candidates", "shape": [n_candidates, dim], "datatype": "FP32",
         "data": cands.tolist()}]}
    if top_k is not None:
        doc["parameters"] = {"top_k": top_k}
    return json.dumps(doc, separators=(",", ":")).encode()


def draw_candidate_counts(count: int, rng: np.random.Generator,
                          median: float = MEDIAN_CANDIDATES, sigma: float = SIGMA_CANDIDATES,
                          low: int = MIX_MIN_CANDIDATES,
                          high: int = MIX_MAX_CANDIDATES) -> np.ndarray:
    """`count` candidate counts (int64): log-normal around `median`, clipped to [low, high]."""
    n = np.exp(np.log(median) + sigma * rng.standard_normal(count))
    return np.clip(np.rint(n), low, high).astype(np.int64)


def write_demo_trace(path: str | os.PathLike, count: int = 1000, seed: int = 0,
                     mean_rate_rps: float = 100.0, *, dim: int = DIM,
                     median_candidates: float = MEDIAN_CANDIDATES,
                     sigma_candidates: float = SIGMA_CANDIDATES,
                     min_candidates: int = MIX_MIN_CANDIDATES,
                     max_candidates: int = MIX_MAX_CANDIDATES,
                     base_url: str | None = None) -> int:
    """Write `count` POST requests to the ranker as a `.cltrace` at `path`: Poisson arrivals at
    `mean_rate_rps`, candidate counts from `draw_candidate_counts`, everything from `seed`.
    Returns the count. Raises ValueError for a bad count or rate, TraceError if unwritable.

    At D = 32 a body is about 205 bytes per candidate: 1000 requests make a file of ~15 MB,
    which a search holds in memory."""
    if count < 0 or not mean_rate_rps > 0:
        raise ValueError("count must be >= 0 and mean_rate_rps > 0")
    rng = np.random.default_rng(seed)
    gaps_ns = rng.exponential(1e9 / mean_rate_rps, count)
    offsets_ns = np.cumsum(gaps_ns) - (gaps_ns[0] if count else 0.0)
    sizes = draw_candidate_counts(count, rng, median_candidates, sigma_candidates,
                                  min_candidates, max_candidates)
    meta = {"model": MODEL_NAME, "dim": dim, "seed": seed, "mean_rate_rps": mean_rate_rps,
            "candidates": f"lognormal median {median_candidates} sigma {sigma_candidates} "
                          f"clipped {min_candidates}..{max_candidates}"}
    headers = [("Content-Type", "application/json")]
    with TraceWriter(path, source="demo:ranker", base_url=base_url, meta=meta) as w:
        for off, n in zip(offsets_ns.astype(np.int64).tolist(), sizes.tolist(), strict=True):
            w.write(TraceRecord(off, "POST", INFER_PATH, headers,
                                make_request_body(n, dim, rng),
                                {"model": MODEL_NAME, "n_candidates": n}))
    return w.count


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m crestline.servers.demo_requests",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    b = sub.add_parser("body", help="one request body on stdout")
    b.add_argument("n_candidates", type=int)
    b.add_argument("--top-k", type=int, default=None)
    b.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("trace", help="a .cltrace of the payload mix")
    t.add_argument("path")
    t.add_argument("--count", type=int, default=1000)
    t.add_argument("--rate", type=float, default=100.0, help="mean recorded rate, rps")
    t.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.what == "body":
        if not 1 <= a.n_candidates:
            p.error("n_candidates must be >= 1")
        sys.stdout.buffer.write(make_request_body(a.n_candidates, DIM,
                                                  np.random.default_rng(a.seed), a.top_k))
    else:
        n = write_demo_trace(a.path, a.count, a.seed, a.rate)
        print(f"wrote {n} requests to {a.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
