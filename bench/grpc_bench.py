#!/usr/bin/env python3
"""gRPC unary calls: crestline vs a grpcio aio client (and h2load when installed), side by side
in one run against one fast loopback gRPC responder, every client pinned to --client-cpu.

The responder is nginx (HTTP/2 prior knowledge on --port, pinned to --server-cpu) answering
every POST with a fixed 2-byte gRPC message (a static file, served to POST by
`error_page 405 =200`) and the trailer `grpc-status: 0` (`add_trailer`): a grpcio client
accepts it as a real call, and nginx's C event loop is not the bottleneck a Python gRPC server
would be. The same nginx serves HTTP/1.1 on --port + 1 (`return 200`), so crestline's own
HTTP/1.1 path is measured at the same rate for the CPU-per-call comparison.

Sections (--sections, default 1,2):
  1  client CPU µs per call at a fixed --rate (--duration s): crestline grpc:// (4 connections
     x --streams), crestline HTTP/1.1 (50 connections); net of a 10-rps idle run
  2  calls per second per client core: crestline grpc:// highest sustained rate up --ladder
     (client_ok, achieved >= 99 %); grpcio aio closed loop (--aio-concurrency calls in flight
     on one channel); h2load -c 4 -m STREAMS with the same request (closed loop)

  .venv/bin/python bench/grpc_bench.py            # full run: on a quiet machine
  .venv/bin/python bench/grpc_bench.py --quick    # smoke test
"""
from __future__ import annotations

import argparse
import asyncio
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

DEFAULT_LADDER = "10k,20k,40k,60k,80k,100k,120k,150k"
METHOD = "/bench.Scorer/Score"
REQUEST = b"\x0a\x05hello"  # a 7-byte message: field 1, "hello"
REPLY = b"\x00\x00\x00\x00\x02\x08\x01"  # one gRPC message: 2 bytes, field 1 = 1

NGINX_CONF = """worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 4096; use epoll; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path tmp_body; proxy_temp_path tmp_proxy; fastcgi_temp_path tmp_fastcgi;
    uwsgi_temp_path tmp_uwsgi; scgi_temp_path tmp_scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    server {{
        listen 127.0.0.1:{port} http2 backlog=4096;
        http2_max_concurrent_streams 1000;
        location / {{
            root {root};
            types {{ }}
            default_type application/grpc;
            try_files /reply.grpc =404;
            error_page 405 =200 /reply.grpc;
            add_trailer grpc-status 0 always;
        }}
    }}
    server {{
        listen 127.0.0.1:{http_port} backlog=4096;
        location / {{ return 200 '{{"status":"ok"}}'; }}
    }}
}}
"""


class GrpcNginx(Nginx):
    def start(self) -> None:
        for port in (self.port, self.port + 1):
            if port_in_use(port):
                raise SystemExit(f"127.0.0.1:{port} is already in use; pick another --port")
        self.prefix = Path(tempfile.mkdtemp(prefix="crestline-grpc-bench-nginx-"))
        (self.prefix / "logs").mkdir()
        (self.prefix / "reply.grpc").write_bytes(REPLY)
        self.prefix.chmod(0o755)  # nginx's worker (not root) reads the reply from here
        conf = self.prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(port=self.port, http_port=self.port + 1,
                                          root=self.prefix))
        subprocess.run(["taskset", "-c", self.cpu, self.bin, "-c", str(conf), "-p",
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
        log(f"nginx master {self.master}: gRPC on {self.grpc_url}, HTTP/1.1 on {self.url}")

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.port}{METHOD}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port + 1}/"


class GrpcBench(Bench):
    def run(self, tag: str, grpc: bool, rate: int, dur: float) -> dict:
        a = self.a
        jpath = self.out / f"{tag}.json"
        cmd = [a.crestline, "run", self.nginx.grpc_url if grpc else self.nginx.url, "--rate",
               str(rate), "--duration", f"{dur:g}s", "--quiet", "--out", str(jpath)]
        cmd += (["--body", f"@{self.out / 'request.pb'}", "--connections", "4", "--streams",
                 str(a.streams)] if grpc else ["--connections", "50"])
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

    def aio(self, tag: str, dur: float) -> dict:
        a = self.a
        cmd = [sys.executable, __file__, "--aio-client", f"127.0.0.1:{self.nginx.port}",
               "--aio-concurrency", str(a.aio_concurrency), "--duration", f"{dur:g}"]
        rec = self.run_client(tag, cmd, dur + 40, a.client_cpu)
        j = {}
        for line in (self.out / f"{tag}.out").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                j = json.loads(line)
        rec.update(tool="grpcio-aio", requests=j.get("ok"), errors=j.get("errors"),
                   achieved_rps=(j["ok"] / j["seconds"]) if j.get("seconds") else None)
        self.note(rec)
        self.pause()
        return rec

    def h2load(self, tag: str, dur: float) -> dict:
        a = self.a
        cmd = [a.h2load, "-c", "4", "-m", str(a.streams), "-D", f"{dur:g}", "-d",
               str(self.out / "request.grpc"), "-H", "content-type: application/grpc",
               "-H", "te: trailers", f"http://127.0.0.1:{self.nginx.port}{METHOD}"]
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
        idle = {g: self.run(f"g1_idle_{'grpc' if g else 'h1'}", g, 10, a.dur) for g in (1, 0)}
        res = {1: [], 0: []}
        for r in range(1, a.rounds + 1):
            for g in (1, 0):
                res[g].append(self.run(f"g1_{'grpc' if g else 'h1'}_r{r}", g, a.rate, a.dur))
        rows = []
        for g in (1, 0):
            recs, icpu = res[g], idle[g].get("cpu_s")
            rows.append([f"grpc://, 4 connections x {a.streams} streams" if g else
                         "HTTP/1.1, 50 connections",
                         med([r.get("achieved_rps") for r in recs], "{:.0f}"),
                         med([self.us_per_req(r) for r in recs]),
                         med([self.us_per_req(r, icpu) for r in recs]),
                         med([r.get("lat_p99") for r in recs], "{:.3f}"),
                         f"{sum(bool(r.get('client_ok')) for r in recs)}/{len(recs)}"])
        self.tables.append(
            f"## 1. crestline CPU per call at {a.rate:,}/s ({a.dur:g} s, client on core "
            f"{a.client_cpu}, nginx on core {a.server_cpu})\n\n" + md_table(
                ["crestline", "achieved/s", "CPU µs/call", "net of idle", "p99 ms",
                 "client_ok"], rows))

    def section2(self) -> None:
        a = self.a
        best, aio, peer = [], [], []
        for r in range(1, a.rounds + 1):
            top = None
            for rate in a.ladder:
                rec = self.run(f"g2_grpc_{rate}_r{r}", True, rate, a.ladder_dur)
                if not (rec.get("client_ok") and rec.get("achieved_rps")
                        and rec["achieved_rps"] >= 0.99 * rate):
                    break
                top = rate
            best.append(top)
            aio.append(self.aio(f"g2_aio_r{r}", a.ladder_dur).get("achieved_rps"))
            if a.h2load:
                peer.append(self.h2load(f"g2_h2load_r{r}", a.ladder_dur).get("achieved_rps"))
        rows = [[f"crestline grpc:// (open loop, 4 x {a.streams} streams)",
                 med(best, "{:,.0f}")],
                [f"grpcio aio, {a.aio_concurrency} calls in flight (closed loop)",
                 med(aio, "{:,.0f}")],
                [f"h2load -c 4 -m {a.streams} (closed loop)",
                 med(peer, "{:,.0f}") if a.h2load else "not installed (nghttp2-client)"]]
        self.tables.append(
            f"## 2. Unary calls per second on one client core ({a.ladder_dur:g} s runs; "
            f"crestline: highest rate of {', '.join(map(str, a.ladder))} with client_ok and "
            ">= 99 % achieved)\n\n" + md_table(["client", "calls/s"], rows))


async def aio_client(target: str, concurrency: int, duration_s: float) -> dict:
    """Closed loop: `concurrency` calls in flight on one grpc.aio channel for duration_s."""
    import grpc

    ok = errors = 0
    async with grpc.aio.insecure_channel(target) as ch:
        call = ch.unary_unary(METHOD)
        await call(REQUEST)  # connected before the clock starts
        end = time.monotonic() + duration_s
        t0 = time.monotonic()

        async def worker():
            nonlocal ok, errors
            while time.monotonic() < end:
                try:
                    await call(REQUEST)
                    ok += 1
                except grpc.RpcError:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.monotonic() - t0
    return {"ok": ok, "errors": errors, "seconds": seconds}


def main() -> int:
    bindir = Path(sys.executable).parent
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke: 2 s runs, 1 round, 2 rates")
    ap.add_argument("--rounds", type=int, default=None, help="default 3, --quick 1")
    ap.add_argument("--sections", default="1,2")
    ap.add_argument("--out-dir", type=Path, default=HERE / "out" / "grpc")
    ap.add_argument("--markdown", type=Path, help="also write the tables to this file")
    ap.add_argument("--port", type=int, default=8093, help="gRPC port; HTTP/1.1 is port + 1")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--rate", type=parse_rate, default=10000)
    ap.add_argument("--duration", type=float, default=None, help="section 1 (default 10)")
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--ladder", default=DEFAULT_LADDER)
    ap.add_argument("--ladder-duration", type=float, default=None, help="default 5")
    ap.add_argument("--aio-concurrency", type=int, default=64)
    ap.add_argument("--pause", type=float, default=1.0)
    ap.add_argument("--crestline", default=str(bindir / "crestline")
                    if (bindir / "crestline").exists() else "crestline")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--h2load", default=shutil.which("h2load"))
    ap.add_argument("--aio-client", metavar="HOST:PORT", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.aio_client:  # the grpcio peer, in its own (pinned) process
        print(json.dumps(asyncio.run(aio_client(a.aio_client, a.aio_concurrency,
                                                a.duration or 5.0))))
        return 0
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.dur = a.duration or (2.0 if a.quick else 10.0)
    a.ladder = [parse_rate(x) for x in a.ladder.split(",")][:2 if a.quick else None]
    a.ladder_dur = a.ladder_duration or (2.0 if a.quick else 5.0)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    (a.out_dir / "request.pb").write_bytes(REQUEST)
    (a.out_dir / "request.grpc").write_bytes(b"\x00" + len(REQUEST).to_bytes(4, "big") + REQUEST)
    nginx = GrpcNginx(a.port, a.server_cpu, a.nginx)
    bench = GrpcBench(a, nginx)
    try:
        nginx.start()
        for s in a.sections.split(","):
            getattr(bench, f"section{s.strip()}")()
    finally:
        nginx.stop()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    head = (f"# gRPC unary calls: crestline vs grpcio aio vs h2load ({_dt.date.today()}, commit "
            f"{commit}, {platform.node()}, {platform.processor() or platform.machine()})\n\n"
            f"`{' '.join(sys.argv)}`")
    text = "\n\n".join([head] + bench.tables) + "\n"
    print(text)
    if a.markdown:
        a.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
