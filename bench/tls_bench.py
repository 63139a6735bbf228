#!/usr/bin/env python3
"""TLS vs plain HTTP/1.1, side by side in one run: client CPU per request and the highest
sustained rate, crestline against one loopback nginx serving both (same worker, same body).

The script makes a self-signed certificate for 127.0.0.1 (openssl), starts its own nginx
(bench/nginx.conf's server, listening plain on --port and TLS on --port + 1, pinned to
--server-cpu), runs every crestline pinned to --client-cpu, and always stops nginx again.
Plain and TLS runs alternate (ABAB) so drift on the machine hits both alike. All load goes to
127.0.0.1 only. The TLS client verifies the certificate (--cacert), as a real run would.

Sections (--sections, default all):
  1  client CPU µs/request at a fixed --rate (default 10k rps, --duration s, 50 connections),
     whole process and net of a same-length 10-rps idle run; TLS handshake p50/p99
  2  highest rate one crestline run sustains (client_ok and achieved >= 99 % of the rate),
     stepping up --ladder (5 s per step, 100 connections), plain and TLS

  .venv/bin/python bench/tls_bench.py             # full run: on a quiet machine
  .venv/bin/python bench/tls_bench.py --quick     # 2 s runs, 1 round, short ladder: smoke test
"""
from __future__ import annotations

import argparse
import subprocess
import sys
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

DEFAULT_LADDER = "20k,40k,60k,80k,100k,120k,150k"


def tls_nginx(a) -> ConfNginx:
    def prepare(prefix: Path) -> None:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(prefix / "key.pem"), "-out", str(prefix / "cert.pem")],
                       check=True, capture_output=True, timeout=30)

    def conf(prefix: Path) -> str:
        return nginx_conf_with(
            f"listen 127.0.0.1:{a.port} backlog=4096;\n        listen 127.0.0.1:{a.port + 1} "
            f"ssl;\n        ssl_certificate {prefix / 'cert.pem'};\n        ssl_certificate_key "
            f"{prefix / 'key.pem'};\n        ssl_protocols TLSv1.2 TLSv1.3;\n"
            "        ssl_session_cache off;")

    return ConfNginx(a.port, a.server_cpu, a.nginx, conf, [a.port, a.port + 1], prepare)


class TlsBench(ProtoBench):
    def run(self, tag: str, tls: bool, rate: int, dur: float, conns: int) -> dict:
        port = self.a.port + (1 if tls else 0)
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        extra = ["--connections", str(conns)]
        if tls:
            extra += ["--cacert", str(self.nginx.prefix / "cert.pem")]
        return self.crestline_run(tag, url, rate, dur, extra)

    def section1(self) -> None:
        a = self.a
        idle = {tls: self.run(f"t1_idle_{'tls' if tls else 'plain'}", tls, 10, a.dur, a.conns)
                for tls in (False, True)}
        res = {False: [], True: []}
        for r in range(1, a.rounds + 1):
            for tls in (False, True):
                res[tls].append(self.run(f"t1_{'tls' if tls else 'plain'}_r{r}", tls, a.rate,
                                         a.dur, a.conns))
        rows = []
        for tls in (False, True):
            recs, icpu = res[tls], idle[tls].get("cpu_s")
            rows.append([
                "https (--cacert)" if tls else "http",
                med([r.get("achieved_rps") for r in recs], "{:.0f}"),
                med([self.us_per_req(r) for r in recs]),
                med([self.us_per_req(r, icpu) for r in recs]),
                med([r.get("lat_p50") for r in recs], "{:.3f}"),
                med([r.get("lat_p99") for r in recs], "{:.3f}"),
                med([r.get("hs_p50") for r in recs], "{:.3f}") if tls else "-",
                med([r.get("hs_p99") for r in recs], "{:.3f}") if tls else "-",
                f"{sum(bool(r.get('client_ok')) for r in recs)}/{len(recs)}"])
        self.tables.append(
            f"## 1. Client CPU per request, TLS vs plain, at {a.rate:,} rps ({a.dur:g} s, "
            f"{a.conns} connections, client on core {a.client_cpu}, nginx on core "
            f"{a.server_cpu})\n\n" + md_table(
                ["url", "achieved rps", "CPU µs/req", "net of idle", "p50 ms", "p99 ms",
                 "handshake p50 ms", "handshake p99 ms", "client_ok"], rows))

    def section2(self) -> None:
        a = self.a
        best = {False: [], True: []}
        for r in range(1, a.rounds + 1):
            for tls in (False, True):
                best[tls].append(self.ladder_top(lambda rate, tls=tls, r=r: self.run(
                    f"t2_{'tls' if tls else 'plain'}_{rate}_r{r}", tls, rate, a.ladder_dur,
                    a.ladder_conns), a.ladder))
        rows = [["https (--cacert)" if tls else "http", med(best[tls], "{:,.0f}")]
                for tls in (False, True)]
        self.tables.append(
            f"## 2. Highest sustained rate, TLS vs plain ({a.ladder_dur:g} s per step, "
            f"{a.ladder_conns} connections, ladder {', '.join(map(str, a.ladder))}; pass = "
            "client_ok and achieved >= 99 %)\n\n" + md_table(["url", "highest passing rps"],
                                                            rows))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(ap, 8097, DEFAULT_LADDER, "tls")
    ap.add_argument("--sections", default="1,2")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--ladder-connections", type=int, default=100)
    a = ap.parse_args()
    settle_options(a)
    a.conns, a.ladder_conns = a.connections, a.ladder_connections
    bench = TlsBench(a, tls_nginx(a))
    run_sections(bench, [s.strip() for s in a.sections.split(",")])
    report("TLS vs plain HTTP/1.1", bench.tables, a.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
