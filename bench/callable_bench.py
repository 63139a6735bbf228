"""The callable transport's ceiling, next to HTTP/1.1 on the same engine.

The callable path (call://NAME, crestline._callable) runs a Python task and coroutine per
request where HTTP/1.1 runs none, so it tops out lower. This bench finds where: a ladder of
constant rates, each for --duration, once through a trivial `async def call(payload): return
200` and once through HTTP/1.1 to the loopback target (`crestline.servers.target`, its own
process, pinned apart with --server-cpu where taskset exists). Per rate it prints the achieved
rate, the client's CPU per request (µs, user + system of the engine, load intervals only),
schedule-lag p99 and client_ok; the ceiling is the highest rate with client_ok and at least
99% of the offered rate completed.

    .venv/bin/python bench/callable_bench.py --quick       # smoke: 2 rates, 2 s each
    .venv/bin/python bench/callable_bench.py --ladder 5k,10k,20k,40k,80k --duration 10

Figures mean something only on an otherwise idle machine (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys


def _target(server_cpu: str | None) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "crestline.servers.target", "--port", "0",
           "--max-seconds", "1800"]
    if server_cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", server_cpu] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    return proc, "http://" + line.removeprefix("listening on ") + "/"


async def _call(payload: bytes) -> int:
    return 200


def _one(url: str, rate: float, duration_s: float) -> dict:
    import crestline

    r = crestline.run(url, rate_rps=rate, duration_s=duration_s, connections=64,
                      interval_s=1.0, body=b'{"x": 1}', method="POST")
    load = [s for s in r.intervals if not s.drain]
    done = sum(s.completed for s in load) or 1
    ok, _ = r.client_check()
    return {"achieved_rps": r.achieved_rps,
            "cpu_us_per_req": 1e6 * sum(s.cpu_s for s in load) / done,
            "lag_p99_ms": r.hists["schedule_lag"].values_at((99.0,))[0] / 1e6,
            "kept_up": ok and r.achieved_rps >= 0.99 * rate}


def _rate(text: str) -> float:
    from crestline.units import parse_rate_rps

    return parse_rate_rps(text, "--ladder")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ladder", default="2k,5k,10k,20k,40k")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--server-cpu", default=None, help="taskset CPU list for the target")
    ap.add_argument("--quick", action="store_true", help="2 rates, 2 s each")
    a = ap.parse_args()
    if a.quick:
        a.ladder, a.duration = "1k,4k", 2.0
    from crestline.transport.callable import register

    rates = [_rate(x) for x in a.ladder.split(",")]
    call_url = register(_call, "bench")
    proc, http_url = _target(a.server_cpu)
    ceilings = {}
    print(f"callable_bench: constant arrivals, {a.duration:g} s per rate, 64 connections\n")
    print("| path | rate | achieved rps | CPU µs/req | schedule lag p99 ms | kept up |")
    print("|---|---|---|---|---|---|")
    try:
        for rate in rates:
            for label, url in (("callable", call_url), ("http/1.1", http_url)):
                f = _one(url, rate, a.duration)
                if f["kept_up"]:
                    ceilings[label] = rate
                print(f"| {label} | {rate:,.0f} | {f['achieved_rps']:,.0f} "
                      f"| {f['cpu_us_per_req']:.1f} | {f['lag_p99_ms']:.2f} "
                      f"| {f['kept_up']} |", flush=True)
    finally:
        proc.kill()
    for label in ("callable", "http/1.1"):
        top = ceilings.get(label)
        print(f"\n{label}: ceiling {'none of the ladder' if top is None else f'{top:,.0f} rps'}",
              end="")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
