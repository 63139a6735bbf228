#!/usr/bin/env python3
"""crestline's capacity search against plain baselines, on the virtual-time simulator.

Every method is a small pure policy (start / on_interval / on_drained, the protocol of
crestline.search.policy) driven by crestline.search.policy.drive on the same SimEngine, seeded alike, so all
methods see the same server and the same random streams. For each scenario the true capacity
(the largest Poisson rate whose steady-state p99 meets the bound) comes from queueing theory
where it is known, else from crestline.search.sim.sim_capacity_rps (long steady-state simulation).

Methods:
  crestline/none, crestline/auto   crestline.search.policy.SearchPolicy, warmup='none' / 'auto'
  mlperf/10s, /30s, /60s           MLPerf LoadGen FindPeakPerformance style: fixed-length probes
                                   judged on the pooled p99 of the whole probe; double from the
                                   start rate while probes pass, then bisect between the last
                                   pass and the first fail until (hi - lo) / lo <= 2%; report lo.
                                   Every probe runs to its end, then the server is drained
                                   (LoadGen waits for every query), so each probe starts idle.
                                   If the start rate fails, halve until a probe passes.
  pa/coarse, pa/fine               perf_analyzer --request-rate-range style: linear levels start,
                                   start + step, ...; each level measured in 5 s windows until
                                   the last 3 are stable (max/min of throughput and of p99 both
                                   <= 1.10) or 10 windows; the level passes if the p99 pooled
                                   over its last 3 windows is <= the bound (stable or not, as
                                   perf_analyzer reports the last 3 windows either way). Load
                                   carries over between levels; stop at the first failing level
                                   (then drain) and report the last passing level (0 if none).

Load-seconds: the engine's virtual clock at the end (engine.now_s), i.e. offered time plus
every drain.

Run:  .venv/bin/python bench/search_bench.py [--seeds 10] [--markdown bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

from crestline.measure.hdr import Hist
from crestline.search.policy import Done, Drain, Offer, SearchConfig, SearchPolicy, drive
from crestline.search.sim import SimEngine, SimServer, mmc_capacity_rps, sim_capacity_rps
from crestline.slo.parse import parse_slo

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TOL = 0.02  # the same relative bracket tolerance as crestline's default
OK_LO, OK_HI = -3.0, 2.0  # a seed is "ok" when its error lies in [-3 %, +2 %]


# -- scenarios --------------------------------------------------------------------------------
@dataclass
class Scenario:
    key: str
    name: str
    server: SimServer
    slo: str            # e.g. "p99=10ms"
    start_rps: float    # every method starts here
    step_rps: float     # perf_analyzer's coarse step; the fine step is step_rps / 4
    truth: tuple        # ("const", value, source) | ("mmc", mu, c) | ("sim",)
    truth_rps: float = 0.0
    truth_src: str = ""
    extra_methods: list = field(default_factory=list)  # run here besides the common ones
    max_seeds: int | None = None  # cap on the seeds (a slow scenario that only shows a bug)

    @property
    def bound_s(self) -> float:
        return parse_slo([self.slo]).latency[0].bound_ms / 1e3

    @property
    def pct(self) -> float:
        return parse_slo([self.slo]).latency[0].percentile


SCENARIOS = [
    Scenario("md4", "M/D/4, 2 ms, p99 <= 10 ms", SimServer(4, 2.0, "const"), "p99=10ms",
             100, 100, ("const", 1739.5, "algorithms.md §3.3 (M/D/c)")),
    Scenario("mm4", "M/M/4, 2 ms mean, p99 <= 20 ms", SimServer(4, 2.0, "exp"), "p99=20ms",
             100, 100, ("mmc", 500.0, 4)),
    Scenario("md1", "M/D/1, 10 ms, p99 <= 50 ms", SimServer(1, 10.0, "const"), "p99=50ms",
             10, 3, ("sim",)),
    Scenario("md1-low", "M/D/1, 10 ms, p99 <= 50 ms, start 3 rps", SimServer(1, 10.0, "const"),
             "p99=50ms", 3, 3, ("sim",), max_seeds=3),
    Scenario("logn8", "lognormal (cv 1.0), c=8, 5 ms mean, p99 <= 40 ms",
             SimServer(8, 5.0, "lognormal", service_cv=1.0), "p99=40ms", 100, 100, ("sim",)),
    Scenario("warm", "M/D/4, 2 ms, 4x slower for the first 30 s, p99 <= 10 ms",
             SimServer(4, 2.0, "const", warmup_s=30.0, warmup_factor=4.0), "p99=10ms",
             300, 100, ("const", 1739.5, "algorithms.md §3.3 (the warm server)"),
             extra_methods=["crestline/none"]),
    Scenario("stall", "M/D/4, 2 ms, 50 ms stall every 5 s, p99 <= 25 ms",
             SimServer(4, 2.0, "const", stall_every_s=5.0, stall_ms=50.0), "p99=25ms",
             50, 50, ("sim",)),
    # Heavy tail and slow relaxation: at the truth the server is ~93% busy, so a queue that
    # builds up takes tens of seconds to forget, and a short calm window reads the tail low.
    Scenario("heavy", "lognormal (cv 2.0), c=4, 4 ms mean, p99 <= 200 ms",
             SimServer(4, 4.0, "lognormal", service_cv=2.0), "p99=200ms", 100, 50, ("sim",)),
]


TRUTH_SEEDS = (1, 2, 3)


def compute_truth(sc: Scenario, requests: int, cache: dict) -> bool:
    """Sets sc.truth_rps / truth_src; True if it came from the cache."""
    kind = sc.truth[0]
    if kind == "const":
        sc.truth_rps, sc.truth_src = sc.truth[1], sc.truth[2]
        return False
    if kind == "mmc":
        sc.truth_rps = mmc_capacity_rps(sc.pct, sc.bound_s, sc.truth[1], sc.truth[2])
        sc.truth_src = "mmc_capacity_rps, Erlang C, exact"
        return False
    key = f"{sc.server!r} {sc.slo} {requests} {TRUTH_SEEDS}"
    hit = key in cache
    if not hit:
        cache[key] = [sim_capacity_rps(sc.server, sc.pct, sc.bound_s, requests=requests,
                                       seed=s, rtol=1e-3) for s in TRUTH_SEEDS]
    est = cache[key]
    sc.truth_rps = statistics.mean(est)
    sc.truth_src = (f"sim_capacity_rps, mean of {len(est)} seeds × {requests / 1e6:g}M "
                    f"requests a probe [{min(est):.1f}..{max(est):.1f}]"
                    + (", stalls kept" if sc.server.stall_every_s else ""))
    return hit


# -- baselines --------------------------------------------------------------------------------
def pooled(snaps) -> Hist:
    h = Hist.empty()
    for s in snaps:
        h.add(s.latency)
    return h


def p99_ms(h: Hist, pct: float) -> float:
    if not h.total:
        return 0.0
    return min(h.values_at((pct,))[0], h.max_ns) / 1e6


class MlperfPolicy:
    """MLPerf LoadGen FindPeakPerformance style: double, then bisect; fixed-length probes."""

    def __init__(self, pct: float, bound_ms: float, start_rps: float, probe_s: float,
                 tolerance: float = TOL, interval_s: float = 1.0, max_probes: int = 60):
        self.pct, self.bound_ms, self.start_rps = pct, bound_ms, start_rps
        self.probe_s, self.tol, self.interval_s = probe_s, tolerance, interval_s
        self.max_probes = max_probes
        self.lo = self.hi = None
        self.rate = start_rps
        self.cur: list = []
        self.steps: list = []
        self.elapsed_s = 0.0

    def start(self):
        return Offer(self.rate)

    def on_interval(self, snap):
        self.elapsed_s += snap.dur_s
        self.cur.append(snap)
        if len(self.cur) * self.interval_s < self.probe_s - 1e-9:
            return Offer(self.rate)
        p = p99_ms(pooled(self.cur), self.pct)
        ok = p <= self.bound_ms
        self.steps.append({"rate_rps": self.rate, "verdict": "pass" if ok else "fail",
                           "why": f"p99 {p:.3g} ms over {self.probe_s:g} s",
                           "duration_s": self.probe_s})
        self.cur = []
        if ok:
            self.lo = self.rate if self.lo is None else max(self.lo, self.rate)
        else:
            self.hi = self.rate if self.hi is None else min(self.hi, self.rate)
        return Drain()  # LoadGen waits for every query of a probe to complete

    def on_drained(self, seconds: float = 0.0):
        self.elapsed_s += seconds
        lo, hi = self.lo, self.hi
        if len(self.steps) >= self.max_probes:
            return Done()
        if hi is None:
            self.rate = lo * 2  # still passing: double
        elif lo is None:
            if hi / 2 < 0.01:
                return Done()
            self.rate = hi / 2  # the start failed: halve
        elif (hi - lo) / lo <= self.tol:
            return Done()
        else:
            self.rate = (lo + hi) / 2
        return Offer(self.rate)

    def result(self) -> dict:
        return {"capacity_rps": self.lo or 0.0, "load_s": self.elapsed_s, "steps": self.steps}


class PerfAnalyzerPolicy:
    """perf_analyzer --request-rate-range style: linear levels, 5 s windows, stability check."""

    def __init__(self, pct: float, bound_ms: float, start_rps: float, step_rps: float,
                 window_s: float = 5.0, stable_windows: int = 3, stability: float = 0.10,
                 max_windows: int = 10, interval_s: float = 1.0, max_levels: int = 400):
        self.pct, self.bound_ms = pct, bound_ms
        self.rate, self.step = start_rps, step_rps
        self.per_window = max(1, round(window_s / interval_s))
        self.window_s = self.per_window * interval_s
        self.k, self.stability, self.max_windows = stable_windows, stability, max_windows
        self.max_levels = max_levels
        self.cur: list = []
        self.windows: list = []  # (snaps, throughput, p99_ms)
        self.lo = None
        self.steps: list = []
        self.elapsed_s = 0.0

    def start(self):
        return Offer(self.rate)

    def _stable(self) -> bool:
        last = self.windows[-self.k:]
        thr = [w[1] for w in last]
        lat = [w[2] for w in last]
        within = lambda xs: min(xs) > 0 and max(xs) / min(xs) <= 1 + self.stability  # noqa: E731
        return within(thr) and within(lat)

    def on_interval(self, snap):
        self.elapsed_s += snap.dur_s
        self.cur.append(snap)
        if len(self.cur) < self.per_window:
            return Offer(self.rate)
        h = pooled(self.cur)
        self.windows.append((self.cur, sum(s.completed for s in self.cur) / self.window_s,
                             p99_ms(h, self.pct)))
        self.cur = []
        stable = len(self.windows) >= self.k and self._stable()
        if not stable and len(self.windows) < self.max_windows:
            return Offer(self.rate)
        p = p99_ms(pooled(s for w in self.windows[-self.k:] for s in w[0]), self.pct)
        ok = p <= self.bound_ms
        self.steps.append({"rate_rps": self.rate, "verdict": "pass" if ok else "fail",
                           "why": f"p99 {p:.3g} ms, {len(self.windows)} windows"
                                  + ("" if stable else ", never stable"),
                           "duration_s": len(self.windows) * self.window_s})
        self.windows = []
        if not ok:
            return Drain()
        self.lo = self.rate
        if len(self.steps) >= self.max_levels:
            return Done()
        self.rate += self.step
        return Offer(self.rate)

    def on_drained(self, seconds: float = 0.0):
        self.elapsed_s += seconds
        return Done()

    def result(self) -> dict:
        return {"capacity_rps": self.lo or 0.0, "load_s": self.elapsed_s, "steps": self.steps}


# -- methods ----------------------------------------------------------------------------------
def make_policy(method: str, sc: Scenario):
    slo = parse_slo([sc.slo])
    b = slo.latency[0]
    family, _, variant = method.partition("/")
    if family == "crestline":
        return SearchPolicy(SearchConfig(slo=slo, start_rate_rps=sc.start_rps, warmup=variant))
    if family == "mlperf":
        return MlperfPolicy(b.percentile, b.bound_ms, sc.start_rps, float(variant.rstrip("s")))
    if family == "pa":
        step = sc.step_rps if variant == "coarse" else sc.step_rps / 4
        return PerfAnalyzerPolicy(b.percentile, b.bound_ms, sc.start_rps, step)
    raise ValueError(method)


def run_one(method: str, sc: Scenario, seed: int) -> dict:
    engine = SimEngine(sc.server, seed=seed)
    res = drive(make_policy(method, sc), engine)
    cap = res["capacity_rps"] or 0.0
    return {"method": method, "scenario": sc.key, "seed": seed, "capacity_rps": cap,
            "err_pct": 100.0 * (cap / sc.truth_rps - 1.0), "load_s": engine.now_s,
            "policy_load_s": res["load_s"], "steps": res["steps"],
            "reason": res.get("reason", "")}


# -- tables -----------------------------------------------------------------------------------
def fmt(x: float, nd: int = 1) -> str:
    return f"{x:+.{nd}f}"


def summarize(runs: list) -> dict:
    errs = [r["err_pct"] for r in runs]
    loads = [r["load_s"] for r in runs]
    ok = sum(1 for e in errs if OK_LO <= e <= OK_HI)
    over = sum(1 for e in errs if e > OK_HI)
    return {"n": len(runs), "err_med": statistics.median(errs), "err_min": min(errs),
            "err_max": max(errs), "ok": ok, "over": over,
            "load_med": statistics.median(loads), "load_max": max(loads)}


def pick(runs, sc_key, method):
    return [r for r in runs if r["scenario"] == sc_key and r["method"] == method]


def scenario_table(sc: Scenario, methods: list, runs: list) -> list:
    lines = [f"### {sc.key}: {sc.name}", "",
             f"Truth {sc.truth_rps:.1f} rps ({sc.truth_src}). Start {sc.start_rps:g} rps for "
             f"every method; pa steps {sc.step_rps:g} / {sc.step_rps / 4:g} rps.", "",
             "| method | seeds | error % median [min..max] | ok (−3..+2 %) | over +2 % "
             "| load-s median | load-s max |",
             "|---|---|---|---|---|---|---|"]
    for m in methods:
        rs = pick(runs, sc.key, m)
        if not rs:
            continue
        s = summarize(rs)
        lines.append(f"| {m} | {s['n']} | {fmt(s['err_med'])} [{fmt(s['err_min'])}.."
                     f"{fmt(s['err_max'])}] | {s['ok']}/{s['n']} | {s['over']}/{s['n']} | "
                     f"{s['load_med']:.0f} | {s['load_max']:.0f} |")
    return lines


def goal_table(scenarios, runs) -> list:
    """Per scenario: the most accurate baseline (most ok seeds, then fewest over +2 %, then the
    smallest |median error|, then the least median load) against crestline/auto."""
    lines = ["Goal check, per scenario: crestline/auto against the most accurate baseline "
             "(most seeds ok, then fewest over +2 %, then smallest |median error|, then least "
             "median load-s).", "",
             "| scenario | truth rps | best baseline | its ok | its over | its median err % "
             "| its load-s median | crestline/auto ok | over | median err % | load-s median "
             "| load ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for sc in scenarios:
        cands = []
        for m in sorted({r["method"] for r in runs if r["scenario"] == sc.key}):
            if m.startswith("crestline"):
                continue
            s = summarize(pick(runs, sc.key, m))
            cands.append(((-s["ok"], s["over"], abs(s["err_med"]), s["load_med"]), m, s))
        c = pick(runs, sc.key, "crestline/auto")
        if not cands or not c:
            continue
        _, bm, b = min(cands)
        s = summarize(c)
        lines.append(f"| {sc.key} | {sc.truth_rps:.1f} | {bm} | {b['ok']}/{b['n']} | "
                     f"{b['over']}/{b['n']} | {fmt(b['err_med'])} | {b['load_med']:.0f} | "
                     f"{s['ok']}/{s['n']} | {s['over']}/{s['n']} | {fmt(s['err_med'])} | "
                     f"{s['load_med']:.0f} | {s['load_med'] / b['load_med']:.2f} |")
    return lines


def trace_lines(r: dict) -> list:
    out = [f"{r['method']} on {r['scenario']}, seed {r['seed']}: {r['capacity_rps']:.1f} rps "
           f"({fmt(r['err_pct'])} %), {r['load_s']:.0f} load-s"
           + (f", {r['reason']}" if r["reason"] else "")]
    for i, s in enumerate(r["steps"]):
        out.append(f"  {i + 1:2d}. {s['rate_rps']:8.1f} rps  {s.get('phase', ''):8s} "
                   f"{s['verdict']:7s} {s['duration_s']:4.0f} s  {s['why']}")
    return out


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "src"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + (" + uncommitted changes in src/" if dirty else "")
    except Exception:
        return "?"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _job(args):
    method, sc, seed = args
    return run_one(method, sc, seed)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10, help="seeds per method and scenario")
    ap.add_argument("--scenarios", default=",".join(s.key for s in SCENARIOS))
    ap.add_argument("--methods", default="crestline/auto,mlperf/10s,mlperf/30s,mlperf/60s,"
                                         "pa/coarse,pa/fine",
                    help="run in every scenario; a scenario may add its own (warm adds "
                         "crestline/none)")
    ap.add_argument("--truth-requests", type=int, default=2_000_000,
                    help="requests per probe of sim_capacity_rps")
    ap.add_argument("--recompute-truth", action="store_true",
                    help="ignore the truth cache (out-dir/search_truth.json)")
    ap.add_argument("--jobs", type=int, default=1, help="processes (the runs are independent)")
    ap.add_argument("--markdown", help="append the section to this file (e.g. bench/RESULTS.md)")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "out"),
                    help="search_bench.json (every run with its steps) and "
                         "search_bench_traces.txt go here (default bench/out)")
    ap.add_argument("--date", default=time.strftime("%Y-%m-%d"))
    args = ap.parse_args(argv)

    keys = args.scenarios.split(",")
    scenarios = [s for s in SCENARIOS if s.key in keys]
    common = args.methods.split(",")
    t_start = time.time()
    rev = git_rev()  # at the start: the code imported is the code of this moment

    os.makedirs(args.out_dir, exist_ok=True)
    cache_path = os.path.join(args.out_dir, "search_truth.json")
    cache = {}
    if not args.recompute_truth and os.path.exists(cache_path):
        with open(cache_path) as f:
            cache = json.load(f)
    print("Truth (computed once, cached in " + cache_path + "):", flush=True)
    for sc in scenarios:
        t0 = time.time()
        hit = compute_truth(sc, args.truth_requests, cache)
        print(f"  {sc.key:8s} {sc.name}: {sc.truth_rps:.2f} rps  [{sc.truth_src}] "
              f"({'cached' if hit else f'{time.time() - t0:.1f} s'})", flush=True)
    with open(cache_path, "w") as f:
        json.dump(cache, f, indent=1)

    all_methods = []
    jobs = []
    for sc in scenarios:
        ms = common + [m for m in sc.extra_methods if m not in common]
        n = min(args.seeds, sc.max_seeds or args.seeds)
        for m in ms:
            if m not in all_methods:
                all_methods.append(m)
            jobs += [(m, sc, seed) for seed in range(n)]
    # crestline first, then the baselines, in the order asked
    all_methods.sort(key=lambda m: (not m.startswith("crestline"), m != "crestline/auto"))
    if args.jobs > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(args.jobs) as pool:
            runs = pool.map(_job, jobs, chunksize=1)
    else:
        runs = []
        for sc in scenarios:
            t0 = time.time()
            for j in jobs:
                if j[1] is sc:
                    runs.append(_job(j))
            print(f"  {sc.key:8s} done ({time.time() - t0:.1f} s wall)", flush=True)
    wall = time.time() - t_start

    print()
    for sc in scenarios:
        for m in all_methods:
            rs = pick(runs, sc.key, m)
            if rs:
                s = summarize(rs)
                print(f"  {sc.key:8s} {m:15s} err {fmt(s['err_med'])} [{fmt(s['err_min'])}.."
                      f"{fmt(s['err_max'])}] ok {s['ok']}/{s['n']} over {s['over']} "
                      f"load {s['load_med']:.0f} s")

    cmd = "python bench/search_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    capped = [f"{sc.key} {sc.max_seeds}" for sc in scenarios
              if sc.max_seeds and sc.max_seeds < args.seeds]
    md = ["## Capacity search vs baselines (simulator)", "",
          f"Command: `.venv/bin/{cmd.strip()}` ({wall / 60:.1f} min wall, {args.jobs} "
          f"process{'es' if args.jobs > 1 else ''}). {args.date}, vm: {os.cpu_count()} CPUs "
          f"({cpu_name()}), Python {platform.python_version()}, crestline @ {rev}. "
          "Virtual time: the figures do not depend on the machine, only on the code and seeds.",
          "",
          f"Every method runs on the same `SimEngine(server, seed=s)` (Poisson arrivals, 1 s "
          f"intervals), seeds 0..{args.seeds - 1}"
          + (f" (fewer where capped: {', '.join(capped)})" if capped else "")
          + ". Truth: the largest Poisson rate whose steady-state p99 meets the bound, "
          "computed once. Error = estimate / truth − 1 (a method that finds nothing reports "
          "0, −100 %); \"ok\" = error within −3 %..+2 %; load-s = the engine's virtual clock "
          "at the end (all offered time plus every drain).", "",
          "- **crestline/auto** (the default), **crestline/none** (warm-up scenario only): "
          "`drive(SearchPolicy(SearchConfig(slo, start_rate_rps=start, warmup='auto'|'none')),"
          " engine)`, every other setting default (2 % tolerance, 10 s steps up to 30 s, 1 "
          "settle interval, 20 steps, 900 load-s).",
          "- **mlperf/Ns** (MLPerf LoadGen FindPeakPerformance style): probes of a fixed N s, "
          "judged on the pooled p99 of the whole probe ≤ bound (no warm-up handling, no early "
          "stop); double from the start rate while probes pass, then bisect between the last "
          "pass and the first fail until (hi − lo)/lo ≤ 2 %; report lo. The server is drained "
          "after every probe (LoadGen waits for all queries), so each probe starts idle. If the "
          "start rate fails, halve until a probe passes.",
          "- **pa/coarse**, **pa/fine** (perf_analyzer `--request-rate-range` style): linear "
          "levels start, start + step, …; each level is measured in 5 s windows until the last "
          "3 are stable (max/min of throughput and of p99 both ≤ 1.10) or 10 windows; it "
          "passes if the p99 pooled over its last 3 windows ≤ bound (stable or not: "
          "perf_analyzer reports the last 3 windows either way); load carries over between "
          "levels; stop at the first failing level (then drain), report the last passing "
          "level (0 if none). Coarse step: a round number ≈ 5–7 % of the truth (what a user "
          "who knows the order of magnitude would pick; the start rate where that is also "
          "≈ 5 % of the truth); fine step = coarse / 4 (≈ 1.5 % of the truth, finer than the "
          "2 % tolerance, so the grid is not what limits accuracy).", ""]
    md += goal_table(scenarios, runs) + [""]
    for sc in scenarios:
        md += scenario_table(sc, all_methods, runs) + [""]
    text = "\n".join(md)
    print()
    print(text)

    bad = [r for r in runs if r["method"].startswith("crestline")
           and not OK_LO <= r["err_pct"] <= OK_HI]
    trace_path = os.path.join(args.out_dir, "search_bench_traces.txt")
    with open(trace_path, "w") as f:
        f.write(f"crestline runs outside -3..+2 % ({len(bad)}), worst first\n\n")
        for r in sorted(bad, key=lambda r: -abs(r["err_pct"])):
            f.write("\n".join(trace_lines(r)) + "\n\n")
    json_path = os.path.join(args.out_dir, "search_bench.json")
    with open(json_path, "w") as f:
        json.dump({"scenarios": [{"key": s.key, "name": s.name, "truth_rps": s.truth_rps,
                                  "truth_src": s.truth_src, "start_rps": s.start_rps,
                                  "step_rps": s.step_rps} for s in scenarios],
                   "runs": runs}, f, indent=1)
    print(f"\n{len(bad)} crestline runs outside -3..+2 %, traces: {trace_path}")
    print(f"every run with its steps: {json_path}")
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n" + text + "\n")
        print(f"appended to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
