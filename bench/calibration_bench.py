"""Synthetic payload vs recorded trace: how far each capacity estimate lands from the truth.

A ranking server whose cost depends on the payload (4 workers, 0.5 ms + 0.02 ms per candidate
scored) receives a skewed mix: most requests rank few candidates, a few rank very many. The
mix comes from a real .cltrace written and read back here. Three numbers, on the virtual-time
simulator:

- truth: the capacity under the recorded mix, by long simulation (sim_capacity_rps);
- (a) crestline's search with one fixed "typical" payload (the median request of the trace),
  which is what a load test with a hand-written request body measures;
- (b) crestline's search with the payload mix drawn from the trace (what `--trace` does).

    .venv/bin/python bench/calibration_bench.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from crestline.search.policy import SearchConfig, SearchPolicy, drive
from crestline.search.sim import SimEngine, SimServer, sim_capacity_rps
from crestline.slo.parse import parse_slo
from crestline.trace.format import TraceRecord, TraceWriter, read_trace

CANDIDATES = np.array([10, 20, 50, 200, 1000])
SHARES = np.array([0.50, 0.25, 0.15, 0.08, 0.02])
SLO = "p99=50ms"


def write_trace(path: Path, n: int = 20_000, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1e9 / 300, size=n)).astype(np.int64)
    picks = rng.choice(len(CANDIDATES), size=n, p=SHARES)
    with TraceWriter(path, source="calibration_bench", base_url="http://ranker:8000") as w:
        for off, k in zip(t - t[0], picks, strict=True):
            body = json.dumps({"inputs": [{"name": "candidates", "shape": [int(CANDIDATES[k])],
                                           "datatype": "INT64"}]}).encode()
            w.write(TraceRecord(int(off), "POST", "/v2/models/ranker/infer",
                                [("Content-Type", "application/json")], body))


def items_from_trace(path: Path) -> np.ndarray:
    """Candidates per request, read from the recorded KServe v2 bodies."""
    return np.array([json.loads(r.body)["inputs"][0]["shape"][0]
                     for r in read_trace(path).records])


def search(server, items, weights, seed):
    cfg = SearchConfig(slo=parse_slo([SLO]), start_rate_rps=100, warmup="none")
    return drive(SearchPolicy(cfg), SimEngine(server, seed=seed, items=items,
                                              item_weights=weights))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    t0 = time.time()
    server = SimServer(servers=4, service_ms=0.5, service_dist="const", per_item_ms=0.02)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ranker.cltrace"
        write_trace(path)
        recorded = items_from_trace(path)
    values, counts = np.unique(recorded, return_counts=True)
    typical = int(np.median(recorded))
    truth = float(np.mean([sim_capacity_rps(server, 99, 0.050, items=values,
                                            item_weights=counts, seed=s) for s in (1, 2, 3)]))
    print(f"recorded mix: {dict(zip(values.tolist(), counts.tolist(), strict=True))}; "
          f"median request {typical} candidates, mean {recorded.mean():.1f}")
    print(f"truth (recorded mix, {SLO}): {truth:.1f} rps")
    rows = []
    for seed in range(a.seeds):
        fixed = search(server, np.array([typical]), None, seed)["capacity_rps"]
        mixed = search(server, values, counts, seed)["capacity_rps"]
        rows.append((seed, fixed, mixed))
        print(f"seed {seed}: (a) fixed typical payload {fixed:.1f} rps ({fixed / truth - 1:+.1%}), "
              f"(b) trace mix {mixed:.1f} rps ({mixed / truth - 1:+.1%})")
    fe = np.array([r[1] / truth - 1 for r in rows])
    me = np.array([r[2] / truth - 1 for r in rows])
    print(f"\n| estimate | error vs truth, median [min..max] |\n|---|---|\n"
          f"| (a) fixed typical payload ({typical} candidates) | {np.median(fe):+.1%} "
          f"[{fe.min():+.1%}..{fe.max():+.1%}] |\n"
          f"| (b) recorded trace mix | {np.median(me):+.1%} [{me.min():+.1%}..{me.max():+.1%}] |")
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
