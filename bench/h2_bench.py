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
import sys
import time
from pathlib import Path

from engine_bench import md_table, med
from proto_bench import (
    ConfNginx,
    ProtoBench,
    common_options,
    nginx_conf_with,
    report,
    run_sections,
    settle_options,
)

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


def h2_nginx(a) -> ConfNginx:
    def conf(_prefix: Path) -> str:
        return nginx_conf_with(
            f"listen 127.0.0.1:{a.port} backlog=4096;\n        listen 127.0.0.1:{a.port + 1} "
            "http2;\n        http2_max_concurrent_streams 1000;")

    return ConfNginx(a.port, a.server_cpu, a.nginx, conf, [a.port, a.port + 1])


class H2Bench(ProtoBench):
    def run(self, tag: str, h2: bool, rate: int, dur: float) -> dict:
        a = self.a
        url = f"http://127.0.0.1:{a.port + (1 if h2 else 0)}/"
        extra = (["--http2", "--connections", "4", "--streams", str(a.streams)] if h2
                 else ["--connections", str(a.conns)])
        return self.crestline_run(tag, url, rate, dur, extra)

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
                best[h2].append(self.ladder_top(lambda rate, h2=h2, r=r: self.run(
                    f"h2_{'h2' if h2 else 'h1'}_{rate}_r{r}", h2, rate, a.ladder_dur), a.ladder))
            if a.h2load:
                peer.append(self.h2load(f"h2_h2load_r{r}", f"http://127.0.0.1:{a.port + 1}/", 4,
                                        a.streams, a.ladder_dur).get("achieved_rps"))
        rows = [[f"crestline HTTP/1.1, {a.conns} connections", med(best[0], "{:,.0f}")],
                [f"crestline --http2, 4 x {a.streams} streams", med(best[1], "{:,.0f}")]]
        rows.append([f"h2load -c 4 -m {a.streams} (closed loop)", med(peer, "{:,.0f}")
                     if a.h2load else "not installed (apt install nghttp2-client)"])
        self.tables.append(
            f"## 2. Highest sustained rate ({a.ladder_dur:g} s per step, ladder "
            f"{', '.join(map(str, a.ladder))}; pass = client_ok and achieved >= 99 %)\n\n"
            + md_table(["client", "rps"], rows))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(ap, 8095, DEFAULT_LADDER, "h2")
    ap.add_argument("--sections", default="0,1,2")
    ap.add_argument("--connections", type=int, default=50, help="HTTP/1.1 connections")
    ap.add_argument("--streams", type=int, default=16, help="HTTP/2 streams per connection")
    a = ap.parse_args()
    settle_options(a)
    a.conns = a.connections
    sections = [s.strip() for s in a.sections.split(",")]
    tables = [hpack_section(a.rounds)] if "0" in sections else []
    bench = H2Bench(a, h2_nginx(a))
    if set(sections) - {"0"}:
        run_sections(bench, [s for s in sections if s != "0"])
    report("HTTP/2 vs HTTP/1.1", tables + bench.tables, a.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
