"""Ray actors against local worker processes, on this machine: rate, client CPU per request,
and what the Ray path costs per interval.

For N = 1 .. --max-actors, the same open-loop run (constant arrivals, --rate, --duration)
against the loopback target (`crestline.servers.target`, its own process) goes once through
`--workers N` (local processes, pipes) and once through `--cluster ray --actors N` (one local
Ray for the whole bench, engine actors in a placement group). Per run it reports the achieved
rate, the client's CPU per request (user + system of every engine process, summed over the
load intervals, divided by completions) and the interval delivery lag: from an interval's
boundary to its merged snapshot reaching the driver (the pool's per-interval overhead: the
actors' encode, Ray's transfer, the driver's decode and merge). The Ray run's setup time
(Ray already up: the actors' start, placement) is printed too.

    .venv/bin/python bench/ray_bench.py --quick          # smoke: 1 and 2 actors, 3 s runs
    .venv/bin/python bench/ray_bench.py --rate 20k --duration 20s --max-actors 4

Figures mean something only on an otherwise idle machine; see bench/RESULTS.md for the
recorded ones and the machine they came from.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def _target() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "crestline.servers.target", "--port", "0",
                             "--max-seconds", "1800"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    return proc, "http://" + line.removeprefix("listening on ") + "/"


def _one(url: str, rate: float, duration_s: float, **pool) -> dict:
    import crestline
    from crestline.engine.stage import monotonic_ns

    lags_ms = []

    def on_interval(snap):
        if not snap.drain:
            lags_ms.append((monotonic_ns() - snap.mono_end_ns) / 1e6)

    t0 = time.monotonic()
    r = crestline.run(url, rate_rps=rate, duration_s=duration_s, connections=64,
                      interval_s=1.0, on_interval=on_interval, **pool)
    wall_s = time.monotonic() - t0
    ok, problems = r.client_check()
    load = [s for s in r.intervals if not s.drain]
    cpu_s = sum(s.cpu_s for s in load)
    done = sum(s.completed for s in load) or 1
    return {"achieved_rps": r.achieved_rps, "cpu_us_per_req": 1e6 * cpu_s / done,
            "deliver_ms_median": statistics.median(lags_ms) if lags_ms else float("nan"),
            "deliver_ms_max": max(lags_ms, default=float("nan")),
            "setup_s": wall_s - duration_s, "client_ok": ok, "client_problems": problems}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=5000.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--max-actors", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--quick", action="store_true", help="3 s runs, 1 and 2 actors")
    a = ap.parse_args()
    if a.quick:
        a.duration, a.max_actors = 3.0, 2
    import ray

    proc, url = _target()
    ray.init(num_cpus=a.max_actors, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 1024 * 1024)
    print(f"ray_bench: {a.rate:g} rps constant for {a.duration:g} s at {url}, "
          f"ray {ray.__version__}, {os.cpu_count()} CPUs\n")
    print("| pool | n | achieved rps | CPU µs/req | interval delivery ms (median, max) "
          "| setup s | client_ok |")
    print("|---|---|---|---|---|---|---|")
    problems = []
    try:
        for n in range(1, a.max_actors + 1):
            for label, pool in (("local --workers", {"workers": n}),
                                ("ray --actors", {"cluster": "ray", "actors": n})):
                f = _one(url, a.rate, a.duration, **pool)
                print(f"| {label} | {n} | {f['achieved_rps']:,.0f} | {f['cpu_us_per_req']:.1f} "
                      f"| {f['deliver_ms_median']:.2f}, {f['deliver_ms_max']:.2f} "
                      f"| {f['setup_s']:.1f} | {f['client_ok']} |", flush=True)
                problems += [f"{label} {n}: {p}" for p in f["client_problems"]]
    finally:
        ray.shutdown()
        proc.kill()
    if problems:  # why a client_ok is false
        print("\n" + "\n".join(f"- {p}" for p in problems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
