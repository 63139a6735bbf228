#!/usr/bin/env python3
"""Soak: one long crestline process against a loopback nginx, watched from outside (issue 15).

Two modes, each one crestline process pinned to --client-cpu, nginx (bench/nginx.conf, started
as bench/engine_bench.py does) pinned to --server-cpu:
  steady  `crestline run` at --rate (default 20k rps) for --duration (default 1 h)
  ladder  `crestline sweep` over --rates (default 1k..30k in 1k steps, the duration split evenly
          over them): many stages, drains and rate changes on one session's connections, as a
          long search makes

Every --sample-s (default 5 s) the script reads the crestline process's RSS (VmRSS; and from
/proc/PID/smaps how much of it is the brk heap and anonymous mappings) and open file
descriptors (/proc/PID/fd). At the end it checks and prints:
  - RSS growth after the first --warmup-s (default 60 s): max RSS after it / RSS at it - 1,
    under --max-rss-growth (default 10 %)
  - fd growth after the warm-up: none (at most --fd-slack, default 0; a ladder may open up to
    --connections more as its rate climbs)
  - every interval in the runlog: the count the duration implies, none missing (indices
    consecutive), each on time (length within 10 % of --interval, start where the last ended)
  - achieved rate of the steady run within 1 % of the offered rate
and writes bench/out/soak/<mode>.json (the samples, the checks) and a markdown table of the RSS
and fd curves (one row a minute) for bench/RESULTS.md. Exit 1 if a check fails. All load goes to
127.0.0.1 only.

  .venv/bin/python bench/soak_bench.py --mode steady                      # the 1 h soak
  .venv/bin/python bench/soak_bench.py --mode ladder                      # the 1 h ladder
  .venv/bin/python bench/soak_bench.py --mode steady --duration 60 --rate 2k --warmup-s 10 \
      --server-cpu 0                                                      # 1 min smoke
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from engine_bench import Nginx, log, parse_rate  # noqa: E402  (one way to start nginx)

OUT = HERE / "out" / "soak"


def sample(pid: int) -> tuple[float, int, float, float] | None:
    """(RSS MiB, open fds, RSS MiB of the brk heap, of anonymous mappings) of pid, or None
    once it is gone. The split says where growth is: glibc's main heap ([heap]) or mmaps
    (Python's 1 MiB obmalloc arenas, numpy's large buffers, other malloc arenas)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        smaps = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return None
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    heap_kb = anon_kb = 0
    name = ""
    for line in smaps.splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5:  # a mapping's first line: its name is the 6th
            name = head[5] if len(head) > 5 else ""
        elif head[0] == "Rss:":
            if name == "[heap]":
                heap_kb += int(head[1])
            elif not name:
                anon_kb += int(head[1])
    return kb / 1024, fds, heap_kb / 1024, anon_kb / 1024


class Watcher(threading.Thread):
    def __init__(self, pid: int, every_s: float):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.rows = pid, every_s, []
        self.t0 = time.monotonic()

    def run(self):
        while True:
            s = sample(self.pid)
            if s is None:
                return
            self.rows.append((round(time.monotonic() - self.t0, 1), round(s[0], 1), s[1],
                              round(s[2], 1), round(s[3], 1)))
            time.sleep(self.every_s)


def command(a, url: str, runlog: Path, out: Path) -> list[str]:
    base = ["taskset", "-c", a.client_cpu, *a.crestline.split()]
    common = ["--connections", str(a.connections), "--interval", f"{a.interval:g}s",
              "--runlog", str(runlog), "--out", str(out), "--quiet"]
    if a.mode == "steady":
        return base + ["run", url, "--rate", str(a.rate), "--duration", f"{a.duration:g}s",
                       *common]
    rates = a.rates.split(",")
    step_s = a.duration / len(rates)
    return base + ["sweep", url, "--rates", a.rates, "--step-duration", f"{step_s:g}s",
                   "--warmup", "none", *common]


def check_intervals(runlog: Path, a) -> dict:
    sys.path.insert(0, str(REPO / "src"))
    from crestline.measure.runlog import read_runlog

    _, intervals, summary = read_runlog(str(runlog))
    load = [s for s in intervals if not s.drain]
    late = [s.index for s in load if abs(s.dur_s - a.interval) > 0.1 * a.interval]
    indices = [s.index for s in intervals]
    gaps = [i for i, (x, y) in enumerate(zip(indices, indices[1:], strict=False)) if y != x + 1]
    expected = round(a.duration / a.interval)
    return {"intervals": len(load), "expected_at_least": expected, "late": late[:20],
            "n_late": len(late), "index_gaps": gaps[:20], "summary": summary is not None,
            "ok": (summary is not None and not gaps and not late and
                   len(load) >= expected - (1 if a.mode == "steady" else len(a.rates.split(",")))
                   )}


def curves(rows, warm_s: float, max_growth: float, fd_slack: int) -> dict:
    after = [r for r in rows if r[0] >= warm_s]
    if not after:
        return {"ok": False, "why": f"no sample after the {warm_s:g} s warm-up"}
    base_rss, base_fd = after[0][1], after[0][2]
    growth = max(r[1] for r in after) / base_rss - 1
    fd_growth = max(r[2] for r in after) - base_fd
    return {"rss_at_warmup_mb": base_rss, "rss_max_mb": max(r[1] for r in after),
            "rss_end_mb": after[-1][1], "rss_growth": round(growth, 4), "fds_at_warmup": base_fd,
            "fds_max": max(r[2] for r in after), "fds_end": after[-1][2],
            "fd_growth": fd_growth, "ok": growth < max_growth and fd_growth <= fd_slack}


def table(rows, every_s: float) -> str:
    """One row per every_s (and the last): elapsed, RSS (and of it the heap and anonymous
    mappings), fds."""
    lines = ["| elapsed | RSS MiB | [heap] MiB | anon MiB | open fds |",
             "|---:|---:|---:|---:|---:|"]
    next_t = 0.0
    for i, (t, rss, fds, heap, anon) in enumerate(rows):
        if t >= next_t or i == len(rows) - 1:
            lines.append(f"| {t / 60:.1f} min | {rss:.1f} | {heap:.1f} | {anon:.1f} | {fds} |")
            next_t = (int(t // every_s) + 1) * every_s
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("steady", "ladder"), default="steady")
    p.add_argument("--rate", type=parse_rate, default=20_000, help="steady: rps (default 20k)")
    p.add_argument("--rates", default=",".join(f"{k}k" for k in range(1, 31)),
                   help="ladder: the sweep's rates (default 1k..30k)")
    p.add_argument("--duration", type=float, default=3600.0, help="seconds (default 3600)")
    p.add_argument("--interval", type=float, default=1.0, help="runlog interval s (default 1)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--warmup-s", type=float, default=60.0)
    p.add_argument("--max-rss-growth", type=float, default=0.10)
    p.add_argument("--fd-slack", type=int, default=0)
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--client-cpu", default="0")
    p.add_argument("--server-cpu", default="1")
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--crestline", default=f"{sys.executable} -m crestline.cli",
                   help="the command that runs crestline (default: this Python's)")
    a = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    runlog, out = OUT / f"{a.mode}.runlog", OUT / f"{a.mode}.result.json"
    nginx = Nginx(a.port, a.server_cpu, a.nginx)
    nginx.start()
    try:
        cmd = command(a, nginx.url, runlog, out)
        log(" ".join(cmd))
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        watcher = Watcher(proc.pid, a.sample_s)
        watcher.start()
        _, err = proc.communicate(timeout=a.duration + 600)
        wall_s = time.monotonic() - t0
        watcher.join(timeout=a.sample_s + 1)
    finally:
        nginx.stop()
    if proc.returncode != 0:
        log(f"crestline exited {proc.returncode}: {err[-2000:]}")
        return 1
    result = json.loads(out.read_text())
    # A ladder opens connections on demand as the rate climbs: bounded by --connections there;
    # a steady run has them all open by the end of its warm-up.
    fd_slack = a.fd_slack + (a.connections if a.mode == "ladder" else 0)
    checks = {"memory_fds": curves(watcher.rows, a.warmup_s, a.max_rss_growth, fd_slack),
              "intervals": check_intervals(runlog, a)}
    if a.mode == "steady":
        achieved = result.get("achieved_rps") or 0
        checks["rate"] = {"offered_rps": a.rate, "achieved_rps": achieved,
                          "ok": achieved >= 0.99 * a.rate}
    record = {"mode": a.mode, "command": cmd, "wall_s": round(wall_s, 1),
              "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                       capture_output=True, text=True).stdout.strip(),
              "machine": f"{platform.node()} {os.cpu_count()} cpus {platform.processor()}",
              "date": time.strftime("%Y-%m-%d"), "checks": checks, "samples": watcher.rows,
              "requests": result.get("requests")}
    (OUT / f"{a.mode}.json").write_text(json.dumps(record, indent=1))
    print(f"## soak {a.mode}: {' '.join(cmd)}\n\ncommit {record['commit']}, "
          f"{record['machine']}, {record['date']}, wall {wall_s:.0f} s\n")
    for name, c in checks.items():
        print(f"- {name}: {'PASS' if c['ok'] else 'FAIL'} "
              + json.dumps({k: v for k, v in c.items() if k != 'ok'}))
    print("\n" + table(watcher.rows, 60.0 if a.duration >= 600 else 10.0))
    return 0 if all(c["ok"] for c in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
