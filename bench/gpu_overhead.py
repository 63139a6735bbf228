#!/usr/bin/env python3
"""What GPU sampling costs the load loop: `crestline run` with and without `--gpu nvml`.

The sampler polls on its own thread, so the event loop only pays for the GIL it gives up
while a poll runs (Python between ctypes calls) and for one window aggregation per interval.
This measures that side by side, in one run, against crestline's loopback target: schedule
lag p99 and max, send lag p99, and the client's CPU seconds (user + system, from wait4), with
no sampling, with 100 ms polls (the default) and with 10 ms polls.

NVML is the test suite's fake libnvidia-ml.so.1 (tests/gpu/fake_nvml.c, built here with gcc)
loaded by the real nvidia-ml-py binding through LD_LIBRARY_PATH: every call crosses ctypes as
with a real driver, but a real driver's calls take longer (tens of µs each), so treat the
figures as the Python-side cost only.

    .venv/bin/python bench/gpu_overhead.py                  # 3 rounds, 5k rps, 10 s
    .venv/bin/python bench/gpu_overhead.py --rounds 1 --duration 3s   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODES = {"no --gpu": [], "--gpu nvml (100ms)": ["--gpu", "nvml"],
         "--gpu nvml --gpu-interval 10ms": ["--gpu", "nvml", "--gpu-interval", "10ms"]}


def build_fake_nvml(out_dir: str) -> str:
    lib = os.path.join(out_dir, "libnvidia-ml.so.1")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wl,-soname,libnvidia-ml.so.1", "-o", lib,
                    str(REPO / "tests" / "gpu" / "fake_nvml.c")], check=True)
    return out_dir


def start_target() -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen([sys.executable, "-m", "crestline.servers.target", "--port", "0",
                          "--max-seconds", "3600"], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return p, f"http://{line.removeprefix('listening on ')}/"


def one_run(url: str, rate: str, duration: str, extra: list[str], env: dict, out: str) -> dict:
    p = subprocess.Popen([sys.executable, "-m", "crestline.cli", "run", url, "--rate", rate,
                          "--duration", duration, "--quiet", "--out", out, *extra], env=env)
    _, status, usage = os.wait4(p.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    d = json.loads(Path(out).read_text())
    if extra:
        g = d["intervals"][0]["gpu"]
        assert g and g["0"]["samples"] > 0, "the sampler did not run"
    return {"sched_p99_ms": d["schedule_lag_ms"]["p99"],
            "sched_max_ms": d["schedule_lag_ms"]["max"],
            "send_p99_ms": d["send_lag_ms"]["p99"], "cpu_s": usage.ru_utime + usage.ru_stime,
            "achieved_rps": d["achieved_rps"], "client_ok": d["client_ok"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", default="5k")
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="crestline-gpu-bench-")
    env = {**os.environ, "LD_LIBRARY_PATH": build_fake_nvml(tmp)}
    target, url = start_target()
    rows: dict[str, list[dict]] = {m: [] for m in MODES}
    try:
        for r in range(a.rounds):
            for mode, extra in MODES.items():  # interleaved, so drift hits every mode alike
                rows[mode].append(one_run(url, a.rate, a.duration, extra, env,
                                          os.path.join(tmp, f"{r}.json")))
                time.sleep(0.5)
    finally:
        target.terminate()
        target.wait()
    print(f"crestline run --rate {a.rate} --duration {a.duration}, {a.rounds} rounds, "
          "median [min..max]\n")
    print("| mode | schedule lag p99 ms | schedule lag max ms | send lag p99 ms | client CPU s "
          "| client_ok |")
    print("|---|---|---|---|---|---|")
    for mode, runs in rows.items():
        def cell(key, fmt="{:.3f}"):
            vals = [x[key] for x in runs]
            return (fmt.format(statistics.median(vals)) + " [" + fmt.format(min(vals)) + ".."
                    + fmt.format(max(vals)) + "]")
        ok = sum(x["client_ok"] for x in runs)
        print(f"| {mode} | {cell('sched_p99_ms')} | {cell('sched_max_ms', '{:.2f}')} | "
              f"{cell('send_p99_ms')} | {cell('cpu_s', '{:.2f}')} | {ok}/{len(runs)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
