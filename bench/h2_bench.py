#!/usr/bin/env python3
"""HTTP/2 vs HTTP/1.1, side by side in one run, against one loopback nginx serving both
(bench/nginx.conf's server: HTTP/1.1 on --port, prior-knowledge HTTP/2 on --port + 1), and
h2load (Debian's nghttp2-client) as the HTTP/2 peer when it is installed.

Sections (--sections, default 0,1,2):
  0  HPACK decode cost: µs per response header block, the `hpack` package's pure-Python
     decoder vs crestline's compiled one (crestline._hpack, what the transport uses), for the
     blocks crestline meets (a lone static :status 200, an nginx-like block on its second
     response, gRPC headers + trailers). No server, no load.
  1  client CPU µs/request at a fixed --rate (--duration s): crestline HTTP/1.1 with 50
     connections; crestline --http2 with 4 connections x --streams; net of a 10-rps idle run
  2  highest rate sustained (client_ok and achieved >= 99 %) up --ladder, HTTP/1.1 vs --http2,
     and h2load's closed-loop rate with the same connections and streams (-c 4 -m STREAMS)

Every client pinned to --client-cpu, nginx to --server-cpu; all load to 127.0.0.1.
  .venv/bin/python bench/h2_bench.py                   # full run: on a quiet machine
  .venv/bin/python bench/h2_bench.py --quick           # smoke test
  .venv/bin/python bench/h2_bench.py --sections 0      # HPACK only (seconds)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine_bench import HERE, Bench, Nginx, dig, log, md_table, med, parse_rate, port_in_use

DEFAULT_LADDER = "20k,40k,60k,80k,100k,120k,150k,200k"


def hpack_section(rounds: int) -> str:
    from crestline._hpack import HpackDecoder
    from hpack import Decoder, Encoder

    enc = Encoder()
    nginx = [enc.encode([(":status", "200"), ("server", "nginx"),
                         ("date", "Tue, 01 Dec 2026 14:40:00 GMT"),
                         ("content-type", "application/json"), ("content-length", "95")])
             for _ in range(2)]
    genc = Encoder()
    grpc = [[genc.encode([(":status", "200"), ("content-type", "application/grpc")]),
             genc.encode([("grpc-status", "0")])] for _ in range(2)]
    cases = [("static `:status 200` (1 byte)", [], [b"\x88"]),
             ("nginx-like, 2nd response (dynamic refs, Huffman date)", nginx[:1], nginx[1:]),
             ("gRPC headers + trailers, 2nd call", grpc[0], grpc[1])]
    rows = []
    for name, warm, blocks in cases:
        row = [name, sum(map(len, blocks))]
        for make, call in ((Decoder, lambda d, b: d.decode(b, raw=True)),
                           (HpackDecoder, lambda d, b: d.decode_all(b))):
            per = []
            for _ in range(rounds):
                dec = make()
                for b in warm:
                    call(dec, b)
                n = 50_000
                t0 = time.perf_counter()
                for _ in range(n):
                    for b in blocks:
                        call(dec, b)
                per.append((time.perf_counter() - t0) / n * 1e6)
            row.append(med(per, "{:.2f}"))
        rows.append(row)
    return ("## 0. HPACK decode per response (µs, one core; crestline's includes a Python call "
            "the transport does not make)\n\n"
            + md_table(["header blocks", "bytes", "hpack (Python)", "crestline._hpack"], rows))


class H2Nginx(Nginx):
    """bench/nginx.conf's server on port (HTTP/1.1) and port + 1 (HTTP/2, prior knowledge)."""

    def start(self) -> None:
        for port in (self.port, self.port + 1):
            if port_in_use(port):
                raise SystemExit(f"127.0.0.1:{port} is already in use; pick another --port")
        self.prefix = Path(tempfile.mkdtemp(prefix="crestline-h2-bench-nginx-"))
        (self.prefix / "logs").mkdir()
        conf = (HERE / "nginx.conf").read_text()
        conf, n = re.subn(r"listen\s+127\.0\.0\.1:\d+([^;]*);",
                          f"listen 127.0.0.1:{self.port}\\1;\n        listen 127.0.0.1:"
                          f"{self.port + 1} http2;\n        http2_max_concurrent_streams 1000;"
                          "\n        http2_max_requests 10000000;", conf)
        assert n == 1, "bench/nginx.conf must have exactly one 'listen 127.0.0.1:PORT'"
        conf_path = self.prefix / "nginx.conf"
        conf_path.write_text(conf)
        subprocess.run(["taskset", "-c", self.cpu, self.bin, "-c", str(conf_path), "-p",
                        str(self.prefix), "-e", str(self.prefix / "logs" / "error.log")],
                       check=True, timeout=15)
        pid_file = self.prefix / "logs" / "nginx.pid"
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()
                   and port_in_use(self.port + 1)):
            if time.monotonic() > deadline:
                raise SystemExit(f"nginx did not come up (see {self.prefix}/logs)")
            time.sleep(0.05)
        self.master = int(pid_file.read_text().strip())
        log(f"nginx master {self.master} on {self.url} and {self.h2_url} (core {self.cpu})")

    @property
    def h2_url(self) -> str:
        return f"http://127.0.0.1:{self.port + 1}/"


class H2Bench(Bench):
    def run(self, tag: str, h2: bool, rate: int, dur: float) -> dict:
        a = self.a
        jpath = self.out / f"{tag}.json"
        cmd = [a.crestline, "run", self.nginx.h2_url if h2 else self.nginx.url, "--rate",
               str(rate), "--duration", f"{dur:g}s", "--quiet", "--out", str(jpath)]
        cmd += (["--http2", "--connections", "4", "--streams", str(a.streams)] if h2
                else ["--connections", str(a.conns)])
        rec = self.run_client(tag, cmd, dur + 40, a.client_cpu)
        try:
            j = json.loads(jpath.read_text())
        except (OSError, ValueError):
            j = {}
        rec.update(tool="crestline", rate=rate, requests=dig(j, "requests", "ok"),
                   errors=dig(j, "requests", "errors"), achieved_rps=j.get("achieved_rps"),
                   client_ok=j.get("client_ok"), send_p99=dig(j, "send_lag_ms", "p99"),
                   lat_p50=dig(j, "latency_ms", "p50"), lat_p99=dig(j, "latency_ms", "p99"))
        self.note(rec)
        self.pause()
        return rec

    def h2load(self, tag: str, dur: float) -> dict:
        a = self.a
        cmd = [a.h2load, "-c", "4", "-m", str(a.streams), "-D", f"{dur:g}", self.nginx.h2_url]
        rec = self.run_client(tag, cmd, dur + 40, a.client_cpu)
        text = (self.out / f"{tag}.out").read_text(errors="replace")
        m = re.search(r"finished in [0-9.]+\w+, ([0-9.]+) req/s", text)
        ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", text)
        rec.update(tool="h2load", achieved_rps=float(m.group(1)) if m else None,
                   requests=int(ok.group(1)) if ok else None)
        self.note(rec)
        self.pause()
        return rec

    def section1(self) -> None:
        a = self.a
        idle = {h2: self.run(f"h1_idle_{'h2' if h2 else 'h1'}", h2, 10, a.dur) for h2 in (0, 1)}
        res = {0: [], 1: []}
        for r in range(1, a.rounds + 1):
            for h2 in (0, 1):
                res[h2].append(self.run(f"h1_{'h2' if h2 else 'h1'}_r{r}", h2, a.rate, a.dur))
        rows = []
        for h2 in (0, 1):
            recs, icpu = res[h2], idle[h2].get("cpu_s")
            rows.append([f"HTTP/2, 4 connections x {a.streams} streams" if h2 else
                         f"HTTP/1.1, {a.conns} connections",
                         med([r.get("achieved_rps") for r in recs], "{:.0f}"),
                         med([self.us_per_req(r) for r in recs]),
                         med([self.us_per_req(r, icpu) for r in recs]),
                         med([r.get("lat_p50") for r in recs], "{:.3f}"),
                         med([r.get("lat_p99") for r in recs], "{:.3f}"),
                         f"{sum(bool(r.get('client_ok')) for r in recs)}/{len(recs)}"])
        self.tables.append(
            f"## 1. Client CPU per request at {a.rate:,} rps ({a.dur:g} s, client on core "
            f"{a.client_cpu}, nginx on core {a.server_cpu})\n\n" + md_table(
                ["crestline", "achieved rps", "CPU µs/req", "net of idle", "p50 ms", "p99 ms",
                 "client_ok"], rows))

    def section2(self) -> None:
        a = self.a
        best = {0: [], 1: []}
        peer = []
        for r in range(1, a.rounds + 1):
            for h2 in (0, 1):
                top = None
                for rate in a.ladder:
                    rec = self.run(f"h2_{'h2' if h2 else 'h1'}_{rate}_r{r}", h2, rate,
                                   a.ladder_dur)
                    if not (rec.get("client_ok") and rec.get("achieved_rps")
                            and rec["achieved_rps"] >= 0.99 * rate):
                        break
                    top = rate
                best[h2].append(top)
            if a.h2load:
                peer.append(self.h2load(f"h2_h2load_r{r}", a.ladder_dur).get("achieved_rps"))
        rows = [[f"crestline HTTP/1.1, {a.conns} connections", med(best[0], "{:,.0f}")],
                [f"crestline --http2, 4 x {a.streams} streams", med(best[1], "{:,.0f}")]]
        rows.append([f"h2load -c 4 -m {a.streams} (closed loop)", med(peer, "{:,.0f}")
                     if a.h2load else "not installed (apt install nghttp2-client)"])
        self.tables.append(
            f"## 2. Highest sustained rate ({a.ladder_dur:g} s per step, ladder "
            f"{', '.join(map(str, a.ladder))}; pass = client_ok and achieved >= 99 %)\n\n"
            + md_table(["client", "rps"], rows))


def main() -> int:
    bindir = Path(sys.executable).parent
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke: 2 s runs, 1 round, 2 rates")
    ap.add_argument("--rounds", type=int, default=None, help="default 3, --quick 1")
    ap.add_argument("--sections", default="0,1,2")
    ap.add_argument("--out-dir", type=Path, default=HERE / "out" / "h2")
    ap.add_argument("--markdown", type=Path, help="also write the tables to this file")
    ap.add_argument("--port", type=int, default=8095, help="HTTP/1.1 port; HTTP/2 is port + 1")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--rate", type=parse_rate, default=10000)
    ap.add_argument("--duration", type=float, default=None, help="section 1 (default 10)")
    ap.add_argument("--connections", type=int, default=50, help="HTTP/1.1 connections")
    ap.add_argument("--streams", type=int, default=16, help="HTTP/2 streams per connection")
    ap.add_argument("--ladder", default=DEFAULT_LADDER)
    ap.add_argument("--ladder-duration", type=float, default=None, help="default 5")
    ap.add_argument("--pause", type=float, default=1.0)
    ap.add_argument("--crestline", default=str(bindir / "crestline")
                    if (bindir / "crestline").exists() else "crestline")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--h2load", default=shutil.which("h2load"))
    a = ap.parse_args()
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.dur = a.duration or (2.0 if a.quick else 10.0)
    a.conns = a.connections
    a.ladder = [parse_rate(x) for x in a.ladder.split(",")][:2 if a.quick else None]
    a.ladder_dur = a.ladder_duration or (2.0 if a.quick else 5.0)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    sections = [s.strip() for s in a.sections.split(",")]
    tables = [hpack_section(a.rounds)] if "0" in sections else []
    nginx = H2Nginx(a.port, a.server_cpu, a.nginx)
    bench = H2Bench(a, nginx)
    if set(sections) - {"0"}:
        try:
            nginx.start()
            for s in sections:
                if s != "0":
                    getattr(bench, f"section{s}")()
        finally:
            nginx.stop()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    head = (f"# HTTP/2 vs HTTP/1.1 ({_dt.date.today()}, commit {commit}, {platform.node()}, "
            f"{platform.processor() or platform.machine()})\n\n`{' '.join(sys.argv)}`")
    text = "\n\n".join([head] + tables + bench.tables) + "\n"
    print(text)
    if a.markdown:
        a.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
