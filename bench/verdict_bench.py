#!/usr/bin/env python3
"""Issue 11's proof: `crestline search` against `crestline sweep` as truth, on real sockets.

For each target the bench starts a real server on 127.0.0.1 (a free port), and:

1. **coarse**: one quick `crestline search` (4 s steps, 5 % tolerance) to find the knee. It
   only places the truth's ladder and counts for neither side.
2. **truth**: `crestline sweep` over a ladder of rates around the knee (`--ladder`, fractions
   of the coarse capacity), long steps (`--truth-step`, 60 s), `--truth-repeats` times with
   different seeds. The truth is the mean of the sweeps' SLO crossings; its noise is half
   their range (max - mean).
3. **search**: `crestline search` with the same SLO and traffic options, `--search-repeats`
   times, default settings otherwise (10 s steps, 2 % tolerance, warm-up auto).

Sweeps and searches alternate (sweep 1, search 1, sweep 2, search 2, ...) so that a drift of
the machine falls on both, and every one of them starts on a freshly started, cold server:
a search must find the warm-up itself, and the `warm` target's warm-up runs from its start.

Goal per target (issue 11): every search within ±3 % of the truth, never above the truth by
more than the truth's noise (capacity <= the highest crossing any sweep saw), and at most half
the load-seconds of one sweep. Load-seconds: the search's `load_s` (its drains are included
in it, `drain_s` is the part of it spent draining); the sweep's `load_s`, warm-up included.

Targets (`--targets`, default all, in this order):

  mix       crestline's demo ranker (numpy MLP, KServe v2 JSON) replayed with a heavy-tailed
            payload mix: a `demo_requests` trace of 10..400 candidates a request (lognormal),
            `--trace FILE --arrival poisson`; p99 <= 50 ms
  cpu       bench/targets/cpu_server.py: 5 ms of numpy CPU work a request on 4 threads, on the
            same cores as the client; p99 <= 25 ms
  warm      crestline.servers.target as an M/D/4 queue, 2 ms service, 4x slower for its first
            30 s; p99 <= 10 ms (queueing theory: 1739.5 rps once warm)
  mlserver  MLServer + mlserver-sklearn (PyPI) serving a RandomForestClassifier trained here
            at start (bench/targets/sklearn_model.py), V2 REST `POST /v2/models/clf/infer`;
            p99 <= 50 ms

Raw JSON of every command goes to bench/out/verdict/ (`--out-dir`, git-ignored), with
`results.json` (everything parsed) and `results.md` (the tables, also printed on stdout).
Every server and every crestline process runs in its own process group under `timeout`, and
is killed at the end, on error, on Ctrl-C and on SIGTERM.

Run (on an otherwise idle machine):
  .venv/bin/python bench/verdict_bench.py                       # ~2.5 h (up to ~3 h), all targets
  .venv/bin/python bench/verdict_bench.py --quick --targets cpu # smoke: ~3 min a target
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PY = sys.executable
CRESTLINE = [PY, "-m", "crestline"]
SERVER_LIFETIME_S = 3 * 3600  # every server is started under `timeout` with this bound
GOAL_ERR_PCT = 3.0
GOAL_LOAD_RATIO = 0.5
FULL_LADDER = "0.80:1.16:0.04"   # fractions of the coarse capacity: 10 rates
QUICK_LADDER = "0.80:1.20:0.10"  # 5 rates


# -- processes --------------------------------------------------------------------------------
class Procs:
    """Every child process group this bench started, so none outlives it."""

    def __init__(self):
        self.live: list[subprocess.Popen] = []

    def popen(self, cmd, **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.live.append(p)
        return p

    def stop(self, p: subprocess.Popen, grace_s: float = 10.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        try:  # the group: MLServer's worker processes, timeout's child
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self) -> None:
        for p in list(self.live):
            self.stop(p, grace_s=5.0)


PROCS = Procs()


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cmd(cmd: list, timeout_s: float, log_path: str) -> int:
    """Run a crestline command in its own group, bounded in time; stdout+stderr to log_path."""
    with open(log_path, "w") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        p = PROCS.popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            return p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.write(f"\n[bench] killed after {timeout_s:.0f} s\n")
            return 124
        finally:
            PROCS.stop(p, grace_s=15.0)


# -- servers ----------------------------------------------------------------------------------
@dataclass
class Server:
    proc: subprocess.Popen
    base: str          # http://127.0.0.1:PORT
    log_path: str


def _wait_listening(proc, log_path: str, timeout_s: float) -> int:
    """The port of a server that prints `listening on HOST:PORT`."""
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            break
        with open(log_path) as f:
            for line in f:
                if line.startswith("listening on "):
                    return int(line.rsplit(":", 1)[1])
        time.sleep(0.1)
    raise RuntimeError(f"server did not start: see {log_path}")


def _wait_ready(url: str, proc, timeout_s: float, log_path: str) -> None:
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server not ready at {url}: see {log_path}")


def start_listening_server(argv: list, ready_path: str, log_path: str) -> Server:
    log = open(log_path, "w")
    proc = PROCS.popen(["timeout", str(SERVER_LIFETIME_S), *argv], stdout=log,
                       stderr=subprocess.STDOUT, cwd=REPO,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    try:
        port = _wait_listening(proc, log_path, 60)
        base = f"http://127.0.0.1:{port}"
        if ready_path:
            _wait_ready(base + ready_path, proc, 60, log_path)
    except BaseException:
        PROCS.stop(proc)
        raise
    return Server(proc, base, log_path)


# -- targets ----------------------------------------------------------------------------------
@dataclass
class Target:
    key: str
    name: str
    slo: str
    path: str                       # URL path of the load
    start: object                   # (ctx, log_path) -> Server
    traffic: list = field(default_factory=list)   # crestline options (besides --seed)
    truth_warmup: str = "auto"      # the sweep's --warmup
    reference: str = ""             # a truth known otherwise, for the reader
    prepare: object = None          # (ctx) -> None, once, before any server starts


def _demo_start(ctx, log_path):
    return start_listening_server([PY, "-m", "crestline.servers.demo", "--port", "0",
                                   "--warmup-s", "0"], "/v2/health/ready", log_path)


def _mix_prepare(ctx):
    path = os.path.join(ctx["out_dir"], "mix.cltrace")
    subprocess.run([PY, "-m", "crestline.servers.demo_requests", "trace", path, "--count",
                    "1000", "--seed", "1"], check=True, timeout=300, cwd=REPO)
    ctx["mix_trace"] = path


def _cpu_start(ctx, log_path):
    return start_listening_server([PY, os.path.join(HERE, "targets", "cpu_server.py"),
                                   "--port", "0", "--threads", "4", "--work-ms", "5"],
                                  "/", log_path)


def _warm_start(ctx, log_path):
    return start_listening_server([PY, "-m", "crestline.servers.target", "--port", "0",
                                   "--servers", "4", "--service-ms", "2", "--warmup-s", "30",
                                   "--warmup-factor", "4"], "", log_path)


def _mlserver_prepare(ctx):
    sys.path.insert(0, os.path.join(HERE, "targets"))
    import sklearn_model  # bench/targets/sklearn_model.py

    root = os.path.join(ctx["out_dir"], "mlserver-repo")
    ctx["mlserver_root"] = root
    ctx["mlserver_info"] = sklearn_model.write_repository(root, 0, 0, 0)
    ctx["mlserver_request"] = ctx["mlserver_info"]["request"]


def _mlserver_start(ctx, log_path):
    root = ctx["mlserver_root"]
    settings_path = os.path.join(root, "settings.json")
    with open(settings_path) as f:
        settings = json.load(f)
    # MLServer cannot take port 0 and report it: pick free ports just before it starts.
    settings.update(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
    with open(settings_path, "w") as f:
        json.dump(settings, f)
    mlserver = os.path.join(os.path.dirname(PY), "mlserver")
    log = open(log_path, "w")
    proc = PROCS.popen(["timeout", str(SERVER_LIFETIME_S), mlserver, "start", root],
                       stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    log.close()
    base = f"http://127.0.0.1:{settings['http_port']}"
    try:
        _wait_ready(base + "/v2/models/clf/ready", proc, 120, log_path)
    except BaseException:
        PROCS.stop(proc)
        raise
    return Server(proc, base, log_path)


JSON_POST = ["--method", "POST", "-H", "Content-Type: application/json"]

TARGETS = {
    "mix": Target("mix", "demo ranker, heavy-tailed payload mix from a trace", "p99=50ms",
                  "/v2/models/ranker/infer", _demo_start,
                  traffic=["--trace", "{mix_trace}", "--arrival", "poisson"],
                  prepare=_mix_prepare),
    "cpu": Target("cpu", "CPU-bound server (5 ms numpy, 4 threads) on the client's cores",
                  "p99=25ms", "/", _cpu_start, traffic=["--arrival", "poisson"]),
    "warm": Target("warm", "M/D/4 queue, 2 ms, 4x slower for its first 30 s", "p99=10ms", "/",
                   _warm_start, traffic=["--arrival", "poisson"], truth_warmup="45s",
                   reference="M/D/4 theory once warm: 1739.5 rps"),
    "mlserver": Target("mlserver", "MLServer + mlserver-sklearn, RandomForest, V2 REST",
                       "p99=50ms", "/v2/models/clf/infer", _mlserver_start,
                       traffic=[*JSON_POST, "--body", "@{mlserver_request}",
                                "--arrival", "poisson"],
                       prepare=_mlserver_prepare),
}


# -- one target -------------------------------------------------------------------------------
def _traffic(t: Target, ctx: dict, seed: int) -> list:
    return [a.format(**ctx) for a in t.traffic] + ["--seed", str(seed)]


def _load(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def parse_fractions(spec: str) -> list:
    if ":" in spec:
        a, b, s = (float(x) for x in spec.split(":"))
        n = int(round((b - a) / s)) + 1
        return [round(a + i * s, 6) for i in range(n)]
    return [float(x) for x in spec.split(",")]


def ladder_rates(center_rps: float, fractions: list) -> list:
    rates = sorted({max(1, int(round(center_rps * f))) for f in fractions})
    return rates


class Bench:
    def __init__(self, args, ctx):
        self.a, self.ctx = args, ctx
        self.out = args.out_dir

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def with_server(self, t: Target, tag: str, fn):
        srv = t.start(self.ctx, os.path.join(self.out, f"{tag}.server.log"))
        try:
            return fn(srv.base + t.path)
        finally:
            PROCS.stop(srv.proc)

    def search(self, t: Target, tag: str, seed: int, extra=()) -> dict:
        out = os.path.join(self.out, f"{tag}.json")
        if os.path.exists(out):
            os.remove(out)

        def go(url):
            cmd = [*CRESTLINE, "search", url, "--slo", t.slo, *_traffic(t, self.ctx, seed),
                   *extra, "--out", out, "--runlog", out[:-5] + ".runlog", "--quiet"]
            t0 = time.monotonic()
            rc = run_cmd(cmd, 20 * 60, os.path.join(self.out, f"{tag}.log"))
            return cmd, rc, time.monotonic() - t0

        cmd, rc, wall = self.with_server(t, tag, go)
        res = _load(out) or {}
        return {"tag": tag, "cmd": shlex.join(cmd), "rc": rc, "wall_s": wall, "seed": seed,
                "capacity_rps": res.get("capacity_rps"), "converged": res.get("converged"),
                "reason": res.get("reason"), "load_s": res.get("load_s"),
                "drain_s": res.get("drain_s"), "steps": len(res.get("steps") or []),
                "json": out if res else None}

    def sweep(self, t: Target, tag: str, rates: list, seed: int) -> dict:
        out = os.path.join(self.out, f"{tag}.json")
        if os.path.exists(out):
            os.remove(out)
        step_s = self.a.truth_step

        def go(url):
            cmd = [*CRESTLINE, "sweep", url, "--rates", ",".join(str(r) for r in rates),
                   "--step-duration", f"{step_s:g}s", "--warmup", t.truth_warmup,
                   "--slo", t.slo, *_traffic(t, self.ctx, seed), "--out", out,
                   "--runlog", out[:-5] + ".runlog", "--quiet"]
            # warm-up (at most 120 s) + each step with its drain, generously
            limit = 180 + len(rates) * (step_s + 60)
            t0 = time.monotonic()
            rc = run_cmd(cmd, limit, os.path.join(self.out, f"{tag}.log"))
            return cmd, rc, time.monotonic() - t0

        cmd, rc, wall = self.with_server(t, tag, go)
        res = _load(out) or {}
        cr = res.get("crossing")
        # A crossing counts as truth only when rows on both sides bound it: with every rate
        # met the sweep reports `between: [top, None]` (above the ladder), with none met
        # `[None, bottom]`.
        btw = (cr.get("between") or [None, None]) if isinstance(cr, dict) else [None, None]
        bounded = isinstance(cr, dict) and cr.get("rate_rps") and None not in btw
        rows = [{"rate_rps": r.get("rate_rps"), "achieved_rps": r.get("achieved_rps"),
                 "p99_ms": (r.get("latency_ms") or {}).get("p99"),
                 "error_rate": r.get("error_rate"), "client_ok": r.get("client_ok"),
                 "slo_met": r.get("slo_met")} for r in res.get("rows") or []]
        return {"tag": tag, "cmd": shlex.join(cmd), "rc": rc, "wall_s": wall, "seed": seed,
                "rates": rates, "crossing": cr,
                "crossing_rps": cr.get("rate_rps") if bounded else None,
                "load_s": res.get("load_s"), "warmup_s": res.get("warmup_s"), "rows": rows,
                "json": out if res else None}

    def coarse(self, t: Target) -> dict:
        self.log(f"{t.key}: coarse search (4 s steps, 5 % tolerance, at most 5 min)")
        return self.search(t, f"{t.key}.coarse", seed=9001,
                           extra=["--step-duration", "4s" if not self.a.quick else "3s",
                                  "--tolerance", "5%",
                                  "--max-time", "5m" if not self.a.quick else "2m"])

    def run_target(self, t: Target) -> dict:
        rec = {"key": t.key, "name": t.name, "slo": t.slo, "reference": t.reference,
               "truth_warmup": t.truth_warmup, "sweeps": [], "searches": []}
        self.current = rec  # what an interrupt leaves of this target still gets reported
        if self.a.center:
            center = float(self.a.center[t.key]) if t.key in self.a.center else None
        else:
            center = None
        if center is None:
            c = self.coarse(t)
            rec["coarse"] = c
            center = c["capacity_rps"]
            if not center:
                rec["error"] = f"coarse search found no capacity (rc {c['rc']}, {c['reason']})"
                self.log(f"{t.key}: {rec['error']}")
                return rec
        rec["center_rps"] = center
        fractions = parse_fractions(self.a.ladder)
        rates = ladder_rates(center, fractions)
        rec["ladder"] = rates
        self.log(f"{t.key}: ladder {rates} ({self.a.truth_step:g} s steps)")
        n = max(self.a.truth_repeats, self.a.search_repeats)
        for i in range(n):
            if i < self.a.truth_repeats:
                self.log(f"{t.key}: sweep {i + 1}/{self.a.truth_repeats}")
                sw = self.sweep(t, f"{t.key}.sweep{i + 1}", rates, seed=1 + 1000 * i)
                # The crossing off the ladder (the coarse search was misled by noise): move
                # the ladder, at most twice, and sweep again; the off-ladder sweeps are kept
                # in the record but not in the truth.
                moves = 0
                while i == 0 and sw["crossing_rps"] is None and sw["rows"] and moves < 2:
                    if all(r["slo_met"] for r in sw["rows"]):
                        center *= 1.35
                    elif not any(r["slo_met"] for r in sw["rows"]):
                        center *= 0.7
                    else:
                        break  # a crossing the sweep could not place: keep what it says
                    moves += 1
                    rates = ladder_rates(center, fractions)
                    self.log(f"{t.key}: crossing off the ladder; again on {rates}")
                    rec.setdefault("ladders_discarded", []).append(rec["ladder"])
                    rec["ladder"] = rates
                    rec["sweeps"].append({**sw, "discarded": "crossing off the ladder"})
                    sw = self.sweep(t, f"{t.key}.sweep{i + 1}.m{moves}", rates,
                                    seed=1 + 1000 * i)
                rec["sweeps"].append(sw)
                self.log(f"{t.key}: sweep {i + 1}: crossing {sw['crossing_rps']}, "
                         f"load {sw['load_s']} s, rc {sw['rc']}")
            if i < self.a.search_repeats:
                self.log(f"{t.key}: search {i + 1}/{self.a.search_repeats}")
                extra = ["--step-duration", "5s"] if self.a.quick else []
                s = self.search(t, f"{t.key}.search{i + 1}", seed=7 + 1000 * i, extra=extra)
                rec["searches"].append(s)
                self.log(f"{t.key}: search {i + 1}: {s['capacity_rps']} rps, {s['load_s']} s, "
                         f"{s['reason']}")
        judge(rec)
        return rec


# -- verdict ----------------------------------------------------------------------------------
def judge(rec: dict) -> None:
    """Adds truth, noise, per-search errors and the goal check to rec (pure)."""
    crossings = [s["crossing_rps"] for s in rec["sweeps"]
                 if not s.get("discarded") and s["crossing_rps"]]
    loads = [s["load_s"] for s in rec["sweeps"] if not s.get("discarded") and s["load_s"]]
    misses = []
    if not crossings:
        rec["truth"] = None
        rec["misses"] = ["no sweep found a crossing: no truth"]
        return
    mean = statistics.mean(crossings)
    rec["truth"] = {"mean_rps": mean, "min_rps": min(crossings), "max_rps": max(crossings),
                    "n": len(crossings),
                    "noise_pct": 100 * (max(crossings) - mean) / mean if len(crossings) > 1
                    else None,
                    "sweep_load_s": statistics.mean(loads) if loads else None}
    bad_rows = sorted({r["rate_rps"] for s in rec["sweeps"] for r in s["rows"]
                       if r["client_ok"] is False})
    if bad_rows:
        rec["truth"]["client_not_ok_rates"] = bad_rows
    for s in rec["searches"]:
        cap = s["capacity_rps"]
        if not cap:
            s["err_pct"] = None
            misses.append(f"{s['tag']}: no capacity ({s['reason']}, rc {s['rc']})")
            continue
        s["err_pct"] = 100 * (cap / mean - 1)
        s["above_noise"] = cap > max(crossings)
        sl = rec["truth"]["sweep_load_s"]
        s["load_ratio"] = (s["load_s"] / sl) if (sl and s["load_s"]) else None
        if abs(s["err_pct"]) > GOAL_ERR_PCT:
            misses.append(f"{s['tag']}: error {s['err_pct']:+.1f} % (goal ±{GOAL_ERR_PCT:g} %)")
        if s["above_noise"] and len(crossings) > 1:
            misses.append(f"{s['tag']}: {cap:.0f} rps above every sweep's crossing "
                          f"(max {max(crossings):.0f})")
        if s["load_ratio"] is not None and s["load_ratio"] > GOAL_LOAD_RATIO:
            misses.append(f"{s['tag']}: load ratio {s['load_ratio']:.2f} > {GOAL_LOAD_RATIO}")
        if s["converged"] is False:
            misses.append(f"{s['tag']}: not converged ({s['reason']})")
    lost = [s["tag"] for s in rec["sweeps"] if not s.get("discarded") and not s["crossing_rps"]]
    if lost:
        misses.append(f"truth: no crossing on the ladder in {', '.join(lost)} (left out)")
    if bad_rows:
        misses.append(f"truth: client_ok false at {', '.join(f'{r:g}' for r in bad_rows)} rps "
                      "(the client fell behind its schedule on those sweep rows)")
    rec["misses"] = misses


# -- report -----------------------------------------------------------------------------------
def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def cpu_desc() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        d = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{d.get('Model name', '?').strip()}, {d.get('CPU(s)', '?').strip()} vCPUs"
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "?"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("crestline", "mlserver", "mlserver-sklearn", "scikit-learn", "numpy"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def _f(x, fmt="{:.0f}", none="-"):
    return none if x is None else fmt.format(x)


def tables(recs: list, header: dict) -> list:
    L = [f"Command: `{header['command']}`  ",
         f"crestline @ {header['rev']}; {header['cpu']}; Python {platform.python_version()}; "
         f"{header['date']}  ",
         f"Versions: {header['versions']}.  ",
         f"Truth: `crestline sweep`, {header['truth_step']:g} s steps, warm-up auto (warm: 45 s), "
         f"{header['truth_repeats']} repeat(s), ladder = the coarse search's capacity "
         f"(or --center) × "
         f"{header['ladder']}. "
         f"Search: `crestline search`, {header['search_steps']}, {header['search_repeats']} "
         "repeat(s). Same SLO and traffic options (Poisson arrivals) for both; every sweep and "
         "search on a freshly started server. Total wall time "
         f"{header['wall_min']:.1f} min."
         + (" **Interrupted**: the targets below are those finished." if header.get("interrupted")
            else ""), "",
         "| target | SLO | truth crossing rps: mean [min..max] (n) | truth noise | search "
         "capacity rps | error vs truth | above truth + noise? | search load-s | sweep load-s "
         "| load ratio | converged: reason | goal |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        tr = r.get("truth")
        ss = r.get("searches", [])
        if tr is None:
            L.append(f"| {r['key']} | {r['slo']} | none | - | "
                     f"{', '.join(_f(s['capacity_rps']) for s in ss) or '-'} | - | - | "
                     f"{', '.join(_f(s['load_s']) for s in ss) or '-'} | - | - | - | "
                     f"MISS: {'; '.join(r.get('misses') or [r.get('error', '?')])} |")
            continue
        noise = "n/a (1 sweep)" if tr["noise_pct"] is None else f"±{tr['noise_pct']:.1f} %"
        conv = "; ".join(f"{s['converged']}: {s['reason']}" for s in ss)
        ok = not r["misses"]
        L.append(
            f"| {r['key']} | {r['slo']} | {tr['mean_rps']:.0f} [{tr['min_rps']:.0f}.."
            f"{tr['max_rps']:.0f}] ({tr['n']}) | {noise} | "
            f"{', '.join(_f(s['capacity_rps']) for s in ss)} | "
            f"{', '.join(_f(s.get('err_pct'), '{:+.1f} %') for s in ss)} | "
            f"{', '.join(('yes' if s.get('above_noise') else 'no') if s.get('err_pct') is not None else '-' for s in ss)} | "  # noqa: E501
            f"{', '.join(_f(s['load_s']) for s in ss)} | {_f(tr['sweep_load_s'])} | "
            f"{', '.join(_f(s.get('load_ratio'), '{:.2f}') for s in ss)} | "
            f"{conv} | {'ok' if ok else 'MISS'} |")
    L += ["", "Misses, per target:", ""]
    for r in recs:
        ms = r.get("misses") or ([r["error"]] if r.get("error") else [])
        L.append(f"- **{r['key']}**: " + ("none" if not ms else "; ".join(ms)))
    L += ["", "Targets:", ""]
    for r in recs:
        extra = f" {r['reference']}." if r.get("reference") else ""
        coarse = r.get("coarse")
        cs = (f" Coarse search: {_f(coarse['capacity_rps'])} rps in {_f(coarse['load_s'])} "
              "load-s (counted for neither side)." if coarse else "")
        L.append(f"- **{r['key']}**: {r['name']}; ladder {r.get('ladder')} rps.{cs}{extra}")
    L += ["", "Sweep rows (rate: achieved rps, p99 ms, SLO met; `!` = client_ok false):", ""]
    for r in recs:
        for s in r.get("sweeps", []):
            cells = [f"{_f(w['rate_rps'])}: {_f(w['achieved_rps'])}, {_f(w['p99_ms'], '{:.1f}')}"
                     f", {'met' if w['slo_met'] else 'not met'}"
                     f"{' !' if w['client_ok'] is False else ''}" for w in s["rows"]]
            cr = s["crossing"]
            crs = (f"crossing {cr.get('rate_rps'):.0f} rps between {cr.get('between')} "
                   f"({cr.get('term') or cr.get('note')})"
                   if isinstance(cr, dict) and cr.get("rate_rps") else "no crossing")
            tag = s["tag"] + (f" (discarded: {s['discarded']})" if s.get("discarded") else "")
            L.append(f"- {tag}: {crs}; load {_f(s['load_s'])} s, warm-up {_f(s['warmup_s'])} s"
                     f"; rc {s['rc']}. " + "; ".join(cells))
    return L


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help=f"comma-separated, from {','.join(TARGETS)} (default all)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 10 s truth steps, 1 sweep, 1 search with 5 s steps, a "
                         "5-rate ladder (~3 min a target); figures not comparable")
    ap.add_argument("--truth-step", type=float, default=None,
                    help="sweep step length, s (default 60; --quick 10)")
    ap.add_argument("--truth-repeats", type=int, default=None, help="default 2 (--quick 1)")
    ap.add_argument("--search-repeats", type=int, default=None, help="default 2 (--quick 1)")
    ap.add_argument("--ladder", default=None,
                    help=f"sweep rates as fractions of the coarse capacity, A:B:STEP or a list "
                         f"(default {FULL_LADDER}; --quick {QUICK_LADDER})")
    ap.add_argument("--center", default="",
                    help="skip the coarse search: KEY=RPS,... ladder centres per target")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "out", "verdict"))
    a = ap.parse_args(argv)
    a.truth_step = a.truth_step or (10.0 if a.quick else 60.0)
    a.truth_repeats = a.truth_repeats or (1 if a.quick else 2)
    a.search_repeats = a.search_repeats or (1 if a.quick else 2)
    a.ladder = a.ladder or (QUICK_LADDER if a.quick else FULL_LADDER)
    a.center = dict(kv.split("=", 1) for kv in a.center.split(",") if kv)
    keys = [k.strip() for k in a.targets.split(",") if k.strip()]
    unknown = [k for k in keys if k not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {unknown}; choose from {list(TARGETS)}")
    os.makedirs(a.out_dir, exist_ok=True)
    for k in keys:  # the raw files of an earlier run of these targets
        for fn in os.listdir(a.out_dir):
            if fn.startswith(k + "."):
                os.remove(os.path.join(a.out_dir, fn))

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    header = {"command": shlex.join([os.path.relpath(PY, REPO) if PY.startswith(REPO) else PY,
                                     os.path.relpath(os.path.abspath(__file__), REPO),
                                     *(sys.argv[1:] if argv is None else argv)]),
              "rev": git_rev(), "cpu": cpu_desc(),
              "date": subprocess.run(["date", "-u"], capture_output=True,
                                     text=True).stdout.strip(),
              "versions": versions(), "truth_step": a.truth_step,
              "truth_repeats": a.truth_repeats, "search_repeats": a.search_repeats,
              "search_steps": "5 s steps (--quick)" if a.quick else "default settings",
              "ladder": a.ladder}
    ctx = {"out_dir": a.out_dir}
    bench = Bench(a, ctx)
    recs = []
    interrupted = False
    t0 = time.monotonic()
    try:
        for k in keys:
            t = TARGETS[k]
            try:
                if t.prepare:
                    t.prepare(ctx)
                recs.append(bench.run_target(t))
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                bench.log(f"{k}: failed: {e}")
                recs.append({"key": k, "name": t.name, "slo": t.slo, "error": str(e),
                             "misses": [f"failed: {e}"], "sweeps": [], "searches": []})
    except KeyboardInterrupt:
        bench.log("interrupted: stopping every server and load")
        PROCS.stop_all()
        cur = getattr(bench, "current", None)
        if cur is not None and cur not in recs:
            cur["partial"] = True
            judge(cur)
            cur["misses"].insert(0, "interrupted before this target finished")
            recs.append(cur)
        interrupted = True
        header["interrupted"] = True
    finally:
        PROCS.stop_all()
        header["wall_min"] = (time.monotonic() - t0) / 60
        if "mlserver_info" in ctx:
            header["mlserver_model"] = ctx["mlserver_info"]
        with open(os.path.join(a.out_dir, "results.json"), "w") as f:
            json.dump({"header": header, "targets": recs}, f, indent=1, default=str)
    md = "\n".join(tables(recs, header)) + "\n"
    with open(os.path.join(a.out_dir, "results.md"), "w") as f:
        f.write(md)
    print(md)
    if interrupted:
        return 130
    return 0 if all(not r.get("misses") for r in recs) else 1


if __name__ == "__main__":
    sys.exit(main())
