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
import json
import sys
import time
from pathlib import Path

from engine_bench import md_table, med
from proto_bench import ConfNginx, ProtoBench, common_options, report, run_sections, settle_options

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


def grpc_nginx(a) -> ConfNginx:
    def prepare(prefix: Path) -> None:
        (prefix / "reply.grpc").write_bytes(REPLY)

    def conf(prefix: Path) -> str:
        return NGINX_CONF.format(port=a.port, http_port=a.port + 1, root=prefix)

    return ConfNginx(a.port, a.server_cpu, a.nginx, conf, [a.port, a.port + 1], prepare)


class GrpcBench(ProtoBench):
    def run(self, tag: str, grpc: bool, rate: int, dur: float) -> dict:
        a = self.a
        if grpc:
            return self.crestline_run(
                tag, f"grpc://127.0.0.1:{a.port}{METHOD}", rate, dur,
                ["--body", f"@{self.out / 'request.pb'}", "--connections", "4", "--streams",
                 str(a.streams)])
        return self.crestline_run(tag, f"http://127.0.0.1:{a.port + 1}/", rate, dur,
                                  ["--connections", "50"])

    def aio(self, tag: str, dur: float) -> dict:
        a = self.a
        cmd = [sys.executable, __file__, "--aio-client", f"127.0.0.1:{a.port}",
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
            best.append(self.ladder_top(lambda rate, r=r: self.run(
                f"g2_grpc_{rate}_r{r}", True, rate, a.ladder_dur), a.ladder))
            aio.append(self.aio(f"g2_aio_r{r}", a.ladder_dur).get("achieved_rps"))
            if a.h2load:
                peer.append(self.h2load(
                    f"g2_h2load_r{r}", f"http://127.0.0.1:{a.port}{METHOD}", 4, a.streams,
                    a.ladder_dur, ["-d", str(self.out / "request.grpc"), "-H",
                                   "content-type: application/grpc", "-H", "te: trailers"])
                            .get("achieved_rps"))
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
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(ap, 8093, DEFAULT_LADDER, "grpc")
    ap.add_argument("--sections", default="1,2")
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--aio-concurrency", type=int, default=64)
    ap.add_argument("--aio-client", metavar="HOST:PORT", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.aio_client:  # the grpcio peer, in its own (pinned) process
        print(json.dumps(asyncio.run(aio_client(a.aio_client, a.aio_concurrency,
                                                a.duration or 5.0))))
        return 0
    settle_options(a)
    (a.out_dir / "request.pb").write_bytes(REQUEST)
    (a.out_dir / "request.grpc").write_bytes(b"\x00" + len(REQUEST).to_bytes(4, "big") + REQUEST)
    bench = GrpcBench(a, grpc_nginx(a))
    run_sections(bench, [s.strip() for s in a.sections.split(",")])
    report("gRPC unary calls: crestline vs grpcio aio vs h2load", bench.tables, a.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
