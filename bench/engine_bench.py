#!/usr/bin/env python3
"""Side-by-side benchmark: crestline vs peer load generators on a loopback nginx.

Follows the anchors bench (../shared/anchors at the time of writing; what it needs is copied here:
nginx.conf, pyclient.py, pct.lua). The script starts its own nginx (1 worker, fixed 95-byte JSON)
on 127.0.0.1:--port pinned to --server-cpu, runs every client pinned to --client-cpu, and always
stops its nginx again. All load goes to 127.0.0.1 only.

Sections (--sections, default all):
  1  client CPU µs/request at a fixed 10k rps (10 s, 50 connections): crestline default,
     --batch-window 1ms, --batch-window 250us, aiohttp+uvloop pyclient; whole process and net
     of a same-length 10-rps idle run
  2  wrk -t1 -c50 closed loop: max rate and CPU µs/request at full speed
  3  highest rate one crestline run sustains (client_ok and achieved >= 99 % of the rate), stepping
     up a ladder of rates (5 s, 100 connections): default, --batch-window 1ms, and both with
     --workers 2 (not pinned: the workers share both cores with nginx)
  4  send lag p50/p99 at 10k and 50k rps, crestline default and --batch-window 1ms
  5  pyclient closed-loop max rate (--rate 0)

Every figure is median [min..max] over --rounds rounds. Raw outputs go to --out-dir.
  .venv/bin/python bench/engine_bench.py            # full run
  .venv/bin/python bench/engine_bench.py --quick    # 2 s runs, 1 round: smoke test
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_LADDER = "20k,40k,60k,80k,100k,120k,150k,200k,250k,300k"


# ------------------------------------------------------------------------------------ helpers
def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def parse_rate(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad rate {text!r}")
    return int(float(m.group(1)) * {"": 1, "k": 1000, "m": 1_000_000}[m.group(2).lower()])


def fmt_rate(r: float) -> str:
    return f"{r / 1000:g}k" if r >= 1000 and r % 1000 == 0 else f"{r:g}"


def med(vals, fmt="{:.1f}") -> str:
    """'median [min..max]' of the non-None values, '-' if none."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} [{fmt.format(min(vals))}..{fmt.format(max(vals))}]"


def dig(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def proc_cpu_s(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------------- nginx
class Nginx:
    """nginx from bench/nginx.conf on 127.0.0.1:port, its own prefix in a temp dir, pinned to a core."""

    def __init__(self, port: int, cpu: str, nginx_bin: str):
        self.port, self.cpu, self.bin = port, cpu, nginx_bin
        self.prefix: Path | None = None
        self.master: int | None = None

    def start(self) -> None:
        if port_in_use(self.port):
            raise SystemExit(f"127.0.0.1:{self.port} is already in use; pick another --port")
        self.prefix = Path(tempfile.mkdtemp(prefix="crestline-bench-nginx-"))
        (self.prefix / "logs").mkdir()
        conf = (HERE / "nginx.conf").read_text()
        conf, n = re.subn(r"listen\s+127\.0\.0\.1:\d+", f"listen 127.0.0.1:{self.port}", conf)
        assert n == 1, "bench/nginx.conf must have exactly one 'listen 127.0.0.1:PORT'"
        conf_path = self.prefix / "nginx.conf"
        conf_path.write_text(conf)
        cmd = ["taskset", "-c", self.cpu, self.bin, "-c", str(conf_path), "-p", str(self.prefix),
               "-e", str(self.prefix / "logs" / "error.log")]
        subprocess.run(cmd, check=True, timeout=15)
        pid_file = self.prefix / "logs" / "nginx.pid"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().strip() and port_in_use(self.port):
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"nginx did not come up on 127.0.0.1:{self.port} (see {self.prefix}/logs)")
        self.master = int(pid_file.read_text().strip())
        with urllib.request.urlopen(self.url, timeout=5) as r:
            body = r.read()
            if r.status != 200:
                raise SystemExit(f"nginx answered {r.status}")
        log(f"nginx master {self.master} worker {self.worker_pid()} on {self.url} "
            f"(core {self.cpu}, {len(body)}-byte body, prefix {self.prefix})")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def worker_pid(self) -> int | None:
        if not self.master:
            return None
        try:
            kids = Path(f"/proc/{self.master}/task/{self.master}/children").read_text().split()
        except OSError:
            return None
        return int(kids[0]) if kids else None

    def stop(self) -> None:
        if self.master and pid_alive(self.master):
            worker = self.worker_pid()
            os.kill(self.master, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while pid_alive(self.master) and time.monotonic() < deadline:
                time.sleep(0.05)
            for pid in (self.master, worker):
                if pid and pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            log(f"nginx {self.master} stopped")
        self.master = None
        if self.prefix:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None


# --------------------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, a: argparse.Namespace, nginx: Nginx):
        self.a, self.nginx = a, nginx
        self.out: Path = a.out_dir
        self.runs: list[dict] = []
        self.tables: list[str] = []
        self.cache: dict[str, dict] = {}  # tag -> run record

    # -- running one client -------------------------------------------------------------------
    def run_client(self, tag: str, cmd: list[str], limit_s: float, cpus: str | None) -> dict:
        """timeout + (taskset) + /usr/bin/time around cmd; tag.out / tag.time / tag.srv in out dir."""
        time_path, out_path = self.out / f"{tag}.time", self.out / f"{tag}.out"
        for p in (time_path, out_path, self.out / f"{tag}.json"):
            p.unlink(missing_ok=True)
        full = ["timeout", "-k", "5", str(int(limit_s))]
        if cpus:
            full += ["taskset", "-c", cpus]
        full += ["/usr/bin/time", "-f", "%U %S %e %M", "-o", str(time_path)] + [str(c) for c in cmd]
        wpid = self.nginx.worker_pid()
        s0 = proc_cpu_s(wpid)
        with open(out_path, "wb") as f:
            proc = subprocess.Popen(full, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                rc = proc.wait(timeout=limit_s + 15)
            except BaseException:
                proc.terminate()  # timeout(1) passes it on to the client's process group
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise
        s1 = proc_cpu_s(wpid)
        rec = {"tag": tag, "cmd": " ".join(full), "rc": rc, "cpus": cpus or "any", "out_path": out_path,
               "srv_cpu_s": round(s1 - s0, 2) if s0 is not None and s1 is not None else None}
        try:
            u, s, e, m = time_path.read_text().strip().splitlines()[-1].split()
            rec.update(user_s=float(u), sys_s=float(s), wall_s=float(e), rss_kb=int(m))
            rec["cpu_s"] = round(rec["user_s"] + rec["sys_s"], 2)
        except (OSError, ValueError, IndexError):
            rec.update(cpu_s=None, wall_s=None, rss_kb=None)
        (self.out / f"{tag}.srv").write_text(f"{rec['srv_cpu_s']}\n")
        self.runs.append(rec)
        self.cache[tag] = rec
        return rec

    # -- the clients --------------------------------------------------------------------------
    def crestline(self, tag: str, rate: int, dur: float, conns: int, extra: list[str],
                  cpus: str | None) -> dict:
        jpath = self.out / f"{tag}.json"
        cmd = [self.a.crestline, "run", self.nginx.url, "--rate", str(rate), "--duration", f"{dur:g}s",
               "--connections", str(conns), "--quiet", "--out", str(jpath)] + extra
        rec = self.run_client(tag, cmd, dur + 40, cpus)
        try:
            j = json.loads(jpath.read_text())
        except (OSError, ValueError):
            j = {}
        rec.update(
            tool="crestline", rate=rate, ok=dig(j, "requests", "ok"),
            completed=dig(j, "requests", "completed"), errors=dig(j, "requests", "errors"),
            achieved_rps=j.get("achieved_rps"), client_ok=j.get("client_ok"),
            client_problems=j.get("client_problems"),
            lat_p50=dig(j, "latency_ms", "p50"), lat_p99=dig(j, "latency_ms", "p99"),
            send_p50=dig(j, "send_lag_ms", "p50"), send_p99=dig(j, "send_lag_ms", "p99"),
            send_p999=dig(j, "send_lag_ms", "p999"), send_max=dig(j, "send_lag_ms", "max"),
            sched_p99=dig(j, "schedule_lag_ms", "p99"), requests=dig(j, "requests", "ok"))
        return rec

    def pyclient(self, tag: str, rate: int, dur: float, conns: int) -> dict:
        cmd = [self.a.python, HERE / "pyclient.py", self.nginx.url, "--rate", str(rate),
               "--duration", f"{dur:g}", "--conns", str(conns)]
        rec = self.run_client(tag, cmd, dur + 40, self.a.client_cpu)
        j = {}
        for line in (self.out / f"{tag}.out").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    j = json.loads(line)
                except ValueError:
                    pass
        rec.update(tool="pyclient", rate=rate, requests=j.get("requests"), errors=j.get("errors"),
                   achieved_rps=j.get("rps"), lat_p50=j.get("p50_ms"), lat_p99=j.get("p99_ms"))
        return rec

    def wrk(self, tag: str, dur: float, conns: int) -> dict:
        cmd = [self.a.wrk, "-t1", f"-c{conns}", f"-d{dur:g}s", "-s", HERE / "pct.lua", self.nginx.url]
        rec = self.run_client(tag, cmd, dur + 40, self.a.client_cpu)
        text = (self.out / f"{tag}.out").read_text(errors="replace")
        m_rps = re.search(r"Requests/sec:\s+([0-9.]+)", text)
        m_req = re.search(r"(\d+) requests in ([0-9.]+)(m?s)", text)
        m_pct = re.search(r"PCT requests=(\d+) duration_us=(\d+) errors=(\d+) p50=(\d+) p90=\d+ p99=(\d+)", text)
        rec.update(tool="wrk", achieved_rps=float(m_rps.group(1)) if m_rps else None,
                   requests=int(m_req.group(1)) if m_req else None,
                   errors=int(m_pct.group(3)) if m_pct else None,
                   lat_p50=int(m_pct.group(4)) / 1000 if m_pct else None,
                   lat_p99=int(m_pct.group(5)) / 1000 if m_pct else None)
        return rec

    @staticmethod
    def us_per_req(rec: dict, idle_cpu: float | None = None) -> float | None:
        cpu, n = rec.get("cpu_s"), rec.get("requests")
        if cpu is None or not n:
            return None
        if idle_cpu is not None:
            cpu = cpu - idle_cpu
        return cpu / n * 1e6

    def note(self, rec: dict) -> None:
        rps = rec.get("achieved_rps")
        extra = ""
        if rec.get("tool") == "crestline":
            extra = f" client_ok={rec.get('client_ok')} send_lag_p99={rec.get('send_p99')}"
        log(f"{rec['tag']}: rc={rec['rc']} rps={rps if rps is None else round(rps)} req={rec.get('requests')} "
            f"cpu={rec.get('cpu_s')}s wall={rec.get('wall_s')}s nginx={rec.get('srv_cpu_s')}s{extra}")

    def pause(self) -> None:
        time.sleep(self.a.pause)

    # -- 1: CPU per request at a fixed rate -----------------------------------------------------
    A_TOOLS = [("crestline", []), ("crestline-bw1ms", ["--batch-window", "1ms"]),
               ("crestline-bw250us", ["--batch-window", "250us"]), ("pyclient", None)]

    def run_a_tool(self, tag: str, tool: str, extra, rate: int) -> dict:
        a = self.a
        if tool == "pyclient":
            rec = self.pyclient(tag, rate, a.dur, a.conns)
        else:
            rec = self.crestline(tag, rate, a.dur, a.conns, extra, a.client_cpu)
        rec["label"] = tool
        self.note(rec)
        self.pause()
        return rec

    def section1(self) -> None:
        a = self.a
        idle = {}
        for tool, extra in self.A_TOOLS:
            idle[tool] = self.run_a_tool(f"s1_idle_{tool}", tool, extra, 10)
        res = {tool: [] for tool, _ in self.A_TOOLS}
        for r in range(1, a.rounds + 1):
            for tool, extra in self.A_TOOLS:
                res[tool].append(self.run_a_tool(f"s1_{tool}_r{r}", tool, extra, a.rate))
        rows = []
        for tool, extra in self.A_TOOLS:
            recs, icpu = res[tool], idle[tool].get("cpu_s")
            cmd = ("pyclient.py --rate %d" % a.rate) if tool == "pyclient" else \
                ("crestline run --rate %d %s" % (a.rate, " ".join(extra))).strip()
            rows.append([
                f"`{cmd}`", med([x.get("achieved_rps") for x in recs], "{:.0f}"),
                med([x.get("requests") for x in recs], "{:.0f}"),
                med([x.get("cpu_s") for x in recs], "{:.2f}"),
                med([self.us_per_req(x) for x in recs]),
                med([self.us_per_req(x, icpu) for x in recs]),
                med([x.get("srv_cpu_s") for x in recs], "{:.2f}"),
                med([x.get("lat_p50") for x in recs], "{:.2f}"), med([x.get("lat_p99") for x in recs], "{:.2f}"),
                med([x.get("send_p99") for x in recs], "{:.3f}"),
                med([x.get("rss_kb") / 1024 if x.get("rss_kb") else None for x in recs], "{:.0f}"),
                ", ".join(str(x.get("client_ok")) for x in recs) if tool != "pyclient" else "n/a",
            ])
        idle_line = ", ".join(f"{t} {idle[t].get('cpu_s')} s CPU" for t, _ in self.A_TOOLS)
        self.tables.append(
            f"## 1. Client CPU per request at a fixed {a.rate:,} rps ({a.dur:g} s, {a.conns} connections, "
            f"client on core {a.client_cpu}, nginx on core {a.server_cpu})\n\n"
            + md_table(["client", "achieved rps", "requests ok", "client CPU s", "CPU µs/req (whole process)",
                        "net CPU µs/req (minus 10-rps idle run)", "nginx CPU s", "latency p50 ms",
                        "latency p99 ms", "send lag p99 ms", "RSS MB", "client_ok"], rows)
            + f"\n\nIdle runs ({a.dur:g} s at 10 rps): {idle_line}. CPU = user+sys of the whole client process "
              "tree from `/usr/bin/time` (start-up included). Anchors (same kind of machine): wrk2 10.2, "
              "autocannon 15.8, hey 21.8, pyclient 59.2 (net 54.0), locust 87.4 µs/req.\n")
        self.s1 = res

    # -- 2 and 5: closed-loop max rate (wrk, pyclient --rate 0), interleaved ---------------------
    def section2_5(self, do2: bool, do5: bool) -> None:
        a = self.a
        res = {"wrk": [], "pyclient": []}
        for r in range(1, a.rounds + 1):
            if do2:
                rec = self.wrk(f"s2_wrk_r{r}", a.dur, a.conns)
                res["wrk"].append(rec); self.note(rec); self.pause()
            if do5:
                rec = self.pyclient(f"s5_pyclient_max_r{r}", 0, a.dur, a.conns)
                res["pyclient"].append(rec); self.note(rec); self.pause()

        def row(name, recs):
            return [name, med([x.get("achieved_rps") for x in recs], "{:.0f}"),
                    med([x.get("requests") for x in recs], "{:.0f}"),
                    med([x.get("cpu_s") for x in recs], "{:.2f}"), med([self.us_per_req(x) for x in recs]),
                    med([x.get("srv_cpu_s") for x in recs], "{:.2f}"),
                    med([x.get("lat_p50") for x in recs], "{:.2f}"), med([x.get("lat_p99") for x in recs], "{:.2f}"),
                    med([x.get("errors") for x in recs], "{:.0f}")]

        hdr = ["client", "max rps", "requests", "client CPU s", "CPU µs/req", "nginx CPU s", "p50 ms", "p99 ms",
               "errors"]
        if do2:
            self.tables.append(
                f"## 2. wrk closed loop, max rate (`wrk -t1 -c{a.conns} -d{a.dur:g}s`, client on core "
                f"{a.client_cpu})\n\n" + md_table(hdr, [row(f"wrk -t1 -c{a.conns}", res["wrk"])])
                + "\n\nwrk is closed loop (no rate limiter): its rps is bounded by the client↔nginx ping-pong "
                  "across the two cores, not only by its CPU. Anchors: 94,230 [92,962..107,676] rps, 8.0 µs/req.\n")
        if do5:
            self.tables.append(
                f"## 5. aiohttp+uvloop pyclient closed loop, max rate (`pyclient.py --rate 0 --conns {a.conns}`)\n\n"
                + md_table(hdr, [row("pyclient --rate 0", res["pyclient"])])
                + "\n\nAnchors: 21,564 [21,080..21,797] rps, 47.3 µs/req.\n")

    # -- 3: highest sustained rate --------------------------------------------------------------
    def s3_variants(self) -> list[tuple[str, list[str], str | None]]:
        wpin = None if self.a.workers_cpus in ("", "none") else self.a.workers_cpus
        return [("crestline", [], self.a.client_cpu),
                ("crestline-bw1ms", ["--batch-window", "1ms"], self.a.client_cpu),
                ("crestline-w2", ["--workers", "2"], wpin),
                ("crestline-w2-bw1ms", ["--workers", "2", "--batch-window", "1ms"], wpin)]

    def section3(self) -> None:
        a = self.a
        variants = self.s3_variants()
        # per variant: list over rounds of (max_passing_rate, first_fail_rec_or_None, rec_at_max)
        summary = {v[0]: [] for v in variants}
        steps = []
        for r in range(1, a.rounds + 1):
            for name, extra, cpus in variants:
                best, best_rec, fail = 0, None, None
                for rate in a.ladder:
                    for attempt in range(a.retries + 1):
                        tag = f"s3_{name}_{fmt_rate(rate)}_r{r}" + (f"_retry{attempt}" if attempt else "")
                        rec = self.crestline(tag, rate, a.dur3, a.conns3, extra, cpus)
                        ach = rec.get("achieved_rps") or 0.0
                        rec["pass"] = bool(rec.get("client_ok")) and ach >= 0.99 * rate
                        rec.update(label=name, round=r, attempt=attempt)
                        steps.append(rec); self.note(rec); self.pause()
                        if rec["pass"] or rec.get("achieved_rps") is None:
                            break  # no retry after a crash
                    if not rec["pass"]:
                        fail = rec
                        break
                    best, best_rec = rate, rec
                summary[name].append((best, fail, best_rec))
        rows = []
        for name, extra, cpus in variants:
            runs = summary[name]
            fails = [f for _, f, _ in runs]
            atmax = [b for _, _, b in runs if b]
            top = a.ladder[-1]
            best_txt = med([b for b, _, _ in runs], "{:,.0f}")
            if all(b == 0 for b, _, _ in runs):
                best_txt = f"< {a.ladder[0]:,} (first step failed)"
            elif any(b == top for b, _, _ in runs):
                best_txt += f" (≥ top rung {top:,} in some round)"
            why = "; ".join(
                f"r{i + 1} {fmt_rate(f['rate'])}: " + self.fail_reason(f) if f else f"r{i + 1}: none"
                for i, f in enumerate(fails))
            pin = f"core {cpus}" if cpus else "not pinned (both cores, shared with nginx)"
            rows.append([f"`crestline run {' '.join(extra)}`".replace(" `", "`"), pin, best_txt,
                         med([self.us_per_req(b) for b in atmax]),
                         med([b["cpu_s"] / b["wall_s"] if b.get("cpu_s") is not None and b.get("wall_s") else None
                              for b in atmax], "{:.2f}"),
                         med([b["srv_cpu_s"] / b["wall_s"] if b.get("srv_cpu_s") is not None and b.get("wall_s")
                              else None for b in atmax], "{:.2f}"),
                         med([b.get("send_p99") for b in atmax], "{:.3f}"),
                         why])
        self.tables.append(
            f"## 3. Highest rate one crestline run sustains ({a.dur3:g} s per step, {a.conns3} connections, "
            f"ladder {', '.join(fmt_rate(x) for x in a.ladder)}; pass = client_ok and achieved ≥ 99 % of the rate"
            + (f"; a failing step is retried {a.retries}x" if a.retries else "") + ", stop at the first failing step)\n\n"
            + md_table(["command", "client pinning", "max sustained rps", "CPU µs/req at max",
                        "client cores busy at max (CPU s / wall s)", "nginx cores busy at max",
                        "send lag p99 ms at max", "first failing step (per round): why"], rows)
            + ("\n\n`--workers 2` runs are not pinned with taskset (equivalent to `taskset -c 0,1` here): with nginx "
               f"pinned to core {a.server_cpu}, the worker processes (and the parent) also compete with nginx for "
               "its core, so their ceiling measures the whole machine, not one client core."
               if variants[2][2] is None else
               f"\n\n`--workers 2` runs are pinned with `taskset -c {variants[2][2]}`.")
            + " Client CPU includes all worker processes (`/usr/bin/time` counts waited-for children).\n")
        step_rows = [[s["label"], s["round"] if not s["attempt"] else f"{s['round']} (retry {s['attempt']})",
                      f"{s['rate']:,}", f"{s['achieved_rps']:.0f}" if s.get("achieved_rps")
                      else "-", s.get("client_ok"), s.get("errors"),
                      f"{s['sched_p99']:.3f}" if s.get("sched_p99") is not None else "-",
                      f"{s['send_p99']:.3f}" if s.get("send_p99") is not None else "-",
                      s.get("cpu_s"), s.get("srv_cpu_s"), "pass" if s["pass"] else "FAIL"] for s in steps]
        self.tables.append(
            "### 3, every step\n\n" + md_table(
                ["variant", "round", "rate", "achieved rps", "client_ok", "errors", "schedule lag p99 ms",
                 "send lag p99 ms", "client CPU s", "nginx CPU s", "result"], step_rows) + "\n")

    @staticmethod
    def fail_reason(rec: dict) -> str:
        parts = []
        if rec.get("achieved_rps") is None:
            first = ""
            try:
                first = rec["out_path"].read_text(errors="replace").strip().splitlines()[0][:160]
            except (KeyError, OSError, IndexError):
                pass
            parts.append(f"no result (rc {rec.get('rc')}{': ' + first if first else ''})")
        else:
            if rec.get("achieved_rps", 0) < 0.99 * rec["rate"]:
                parts.append(f"achieved {rec['achieved_rps']:,.0f}")
            for p in rec.get("client_problems") or []:
                parts.append(p.split(":")[0].split(";")[0])
        return ", ".join(parts) or "?"

    # -- 4: send lag at 10k and 50k ----------------------------------------------------------------
    def section4(self) -> None:
        a = self.a
        variants = [("crestline", []), ("crestline-bw1ms", ["--batch-window", "1ms"])]
        rows = []
        for rate in a.lag_rates:
            for name, extra in variants:
                recs = []
                for r in range(1, a.rounds + 1):
                    reuse = self.cache.get(f"s1_{name}_r{r}")
                    if reuse and reuse.get("rate") == rate:
                        recs.append(reuse)  # same command as section 1
                        continue
                    rec = self.crestline(f"s4_{name}_{fmt_rate(rate)}_r{r}", rate, a.dur, a.conns, extra,
                                         a.client_cpu)
                    self.note(rec); self.pause()
                    recs.append(rec)
                rows.append([f"{rate:,}", f"`crestline run {' '.join(extra)}`".replace(" `", "`"),
                             med([x.get("achieved_rps") for x in recs], "{:.0f}"),
                             med([x.get("send_p50") for x in recs], "{:.3f}"),
                             med([x.get("send_p99") for x in recs], "{:.3f}"),
                             med([x.get("send_p999") for x in recs], "{:.3f}"),
                             med([x.get("sched_p99") for x in recs], "{:.3f}"),
                             med([x.get("lat_p50") for x in recs], "{:.3f}"),
                             med([x.get("lat_p99") for x in recs], "{:.3f}"),
                             med([self.us_per_req(x) for x in recs]),
                             ", ".join(str(x.get("client_ok")) for x in recs)])
        self.tables.append(
            f"## 4. Send lag (ms, from crestline's JSON) at {' and '.join(f'{r:,}' for r in a.lag_rates)} rps "
            f"({a.dur:g} s, {a.conns} connections, client on core {a.client_cpu})\n\n"
            + md_table(["rate", "command", "achieved rps", "send lag p50", "send lag p99", "send lag p99.9",
                        "schedule lag p99", "latency p50", "latency p99", "CPU µs/req", "client_ok"], rows)
            + f"\n\nThe {a.rate:,}-rps rows reuse section 1's runs when section 1 ran.\n")


# ---------------------------------------------------------------------------------------- main
def machine_info(a, nginx: Nginx) -> str:
    def sh(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001
            return f"? ({e})"
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "ext"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit += " (src/ext modified)" if dirty else ""
    except Exception:  # noqa: BLE001
        commit = "?"
    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"# crestline engine bench\n\n"
            f"{_dt.datetime.now().isoformat(timespec='seconds')}, {platform.node()}: {os.cpu_count()} CPUs "
            f"({cpu_model}), {platform.platform()}, Python {platform.python_version()}.  \n"
            f"{sh([a.crestline, '--version'])} @ {commit}; {sh([a.nginx, '-v'])}; "
            f"{' '.join(sh([a.wrk, '-v']).split()[:2])}; pyclient = aiohttp+uvloop ({sh([a.python, '-c', 'import aiohttp, uvloop; print(aiohttp.__version__, uvloop.__version__)'])}).  \n"
            f"Target {nginx.url}: nginx, 1 worker, pinned to core {a.server_cpu}, 95-byte JSON via `return 200`. "
            f"Clients pinned to core {a.client_cpu} (except `--workers`). Rounds: {a.rounds}"
            f"{' (QUICK smoke run: short durations, not comparable figures)' if a.quick else ''}. "
            f"Figures: median [min..max] over rounds.\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    bindir = Path(sys.executable).parent
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 s durations, 1 round")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per measurement (default 3, --quick 1)")
    ap.add_argument("--sections", default="1,2,3,4,5", help="which sections to run (default 1,2,3,4,5)")
    ap.add_argument("--out-dir", type=Path, default=HERE / "out", help="raw outputs (default bench/out)")
    ap.add_argument("--markdown", type=Path, help="also write the tables to this file")
    ap.add_argument("--port", type=int, default=8099, help="port for this script's own nginx (default 8099)")
    ap.add_argument("--server-cpu", default="0", help="core for nginx (default 0)")
    ap.add_argument("--client-cpu", default="1", help="core for the single-process clients (default 1)")
    ap.add_argument("--workers-cpus", default="none",
                    help="taskset list for --workers runs, 'none' = not pinned (default none)")
    ap.add_argument("--rate", type=parse_rate, default=10000, help="section 1 rate (default 10k)")
    ap.add_argument("--duration", type=float, default=None, help="sections 1, 2, 4, 5 run length s (default 10)")
    ap.add_argument("--connections", type=int, default=50, help="sections 1, 2, 4, 5 connections (default 50)")
    ap.add_argument("--ladder", default=DEFAULT_LADDER, help=f"section 3 rates (default {DEFAULT_LADDER})")
    ap.add_argument("--ladder-duration", type=float, default=None, help="section 3 step length s (default 5)")
    ap.add_argument("--retries", type=int, default=0,
                    help="section 3: re-run a failing step this many times before stopping (default 0)")
    ap.add_argument("--ladder-connections", type=int, default=100, help="section 3 connections (default 100)")
    ap.add_argument("--lag-rates", default="10k,50k", help="section 4 rates (default 10k,50k)")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between runs (default 1)")
    ap.add_argument("--crestline", default=str(bindir / "crestline") if (bindir / "crestline").exists()
                    else (shutil.which("crestline") or "crestline"))
    ap.add_argument("--python", default=sys.executable, help="python with aiohttp+uvloop for pyclient.py")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    a = ap.parse_args()

    a.rounds = a.rounds or (1 if a.quick else 3)
    a.dur = a.duration or (2.0 if a.quick else 10.0)
    a.dur3 = a.ladder_duration or (2.0 if a.quick else 5.0)
    a.conns, a.conns3 = a.connections, a.ladder_connections
    a.ladder = sorted(parse_rate(x) for x in a.ladder.split(",") if x.strip())
    a.lag_rates = [parse_rate(x) for x in a.lag_rates.split(",") if x.strip()]
    sections = {int(x) for x in a.sections.split(",") if x.strip()}
    if not sections <= {1, 2, 3, 4, 5}:
        ap.error("--sections takes numbers 1..5")
    for tool in (a.crestline, a.wrk, a.nginx, "taskset", "timeout", "/usr/bin/time"):
        if not shutil.which(tool):
            ap.error(f"{tool} not found")
    allowed = os.sched_getaffinity(0)
    for c in (a.server_cpu, a.client_cpu):
        if not c.isdigit() or int(c) not in allowed:
            ap.error(f"core {c} not available (have {sorted(allowed)})")
    a.out_dir.mkdir(parents=True, exist_ok=True)
    stale = [p for p in a.out_dir.glob("s[1-5]_*") if p.suffix in (".out", ".time", ".json", ".srv")]
    for p in stale:  # this script's own raw files from an earlier run
        p.unlink()
    if stale:
        log(f"removed {len(stale)} raw files of an earlier run from {a.out_dir}")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    t_start = time.monotonic()
    nginx = Nginx(a.port, a.server_cpu, a.nginx)
    bench = Bench(a, nginx)
    header = ""
    rc = 0
    try:
        nginx.start()
        header = machine_info(a, nginx)
        if 1 in sections:
            bench.section1()
        if 2 in sections or 5 in sections:
            bench.section2_5(2 in sections, 5 in sections)
        if 3 in sections:
            bench.section3()
        if 4 in sections:
            bench.section4()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); writing what was measured")
        rc = 130
    finally:
        nginx.stop()
    # put the sections in their numeric order
    order = lambda t: int(re.match(r"#+ (\d)", t).group(1)) if re.match(r"#+ \d", t) else 9  # noqa: E731
    tables = sorted(bench.tables, key=order)
    elapsed = time.monotonic() - t_start
    text = (header + "\n" + "\n".join(tables) +
            f"\nTotal bench time {elapsed / 60:.1f} min. Raw outputs: {a.out_dir} "
            "(`<tag>.out` tool output, `<tag>.time` user sys wall maxrss_kB, `<tag>.json` crestline result, "
            "`<tag>.srv` nginx worker CPU s; `runs.json` all parsed records).\n")
    print(text)
    (a.out_dir / "results.md").write_text(text)
    (a.out_dir / "runs.json").write_text(json.dumps(bench.runs, indent=1, default=str))
    if a.markdown:
        a.markdown.write_text(text)
    log(f"done in {elapsed:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
