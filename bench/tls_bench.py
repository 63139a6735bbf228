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

DEFAULT_LADDER = "20k,40k,60k,80k,100k,120k,150k"


class TlsNginx(Nginx):
    """bench/nginx.conf's server on 127.0.0.1:port (plain) and port + 1 (TLS, HTTP/1.1)."""

    def start(self) -> None:
        for port in (self.port, self.port + 1):
            if port_in_use(port):
                raise SystemExit(f"127.0.0.1:{port} is already in use; pick another --port")
        self.prefix = Path(tempfile.mkdtemp(prefix="crestline-tls-bench-nginx-"))
        (self.prefix / "logs").mkdir()
        self.cert, key = self.prefix / "cert.pem", self.prefix / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(self.cert)],
                       check=True, capture_output=True, timeout=30)
        conf = (HERE / "nginx.conf").read_text()
        conf, n = re.subn(
            r"listen\s+127\.0\.0\.1:\d+([^;]*);",
            f"listen 127.0.0.1:{self.port}\\1;\n        listen 127.0.0.1:{self.port + 1} ssl;\n"
            f"        ssl_certificate {self.cert};\n        ssl_certificate_key {key};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_cache off;", conf)
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
        log(f"nginx master {self.master} on {self.url} and {self.tls_url} (core {self.cpu})")

    @property
    def tls_url(self) -> str:
        return f"https://127.0.0.1:{self.port + 1}/"


class TlsBench(Bench):
    def run(self, tag: str, tls: bool, rate: int, dur: float, conns: int) -> dict:
        jpath = self.out / f"{tag}.json"
        url = self.nginx.tls_url if tls else self.nginx.url
        cmd = [self.a.crestline, "run", url, "--rate", str(rate), "--duration", f"{dur:g}s",
               "--connections", str(conns), "--quiet", "--out", str(jpath)]
        if tls:
            cmd += ["--cacert", str(self.nginx.cert)]
        rec = self.run_client(tag, cmd, dur + 40, self.a.client_cpu)
        try:
            j = json.loads(jpath.read_text())
        except (OSError, ValueError):
            j = {}
        rec.update(tool="crestline", rate=rate, requests=dig(j, "requests", "ok"),
                   errors=dig(j, "requests", "errors"), achieved_rps=j.get("achieved_rps"),
                   client_ok=j.get("client_ok"), send_p99=dig(j, "send_lag_ms", "p99"),
                   lat_p50=dig(j, "latency_ms", "p50"), lat_p99=dig(j, "latency_ms", "p99"),
                   hs_p50=dig(j, "connection_setup_ms", "tls_handshake", "p50"),
                   hs_p99=dig(j, "connection_setup_ms", "tls_handshake", "p99"))
        self.note(rec)
        self.pause()
        return rec

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
                top = None
                for rate in a.ladder:
                    rec = self.run(f"t2_{'tls' if tls else 'plain'}_{rate}_r{r}", tls, rate,
                                   a.ladder_dur, a.ladder_conns)
                    if not (rec.get("client_ok") and rec.get("achieved_rps")
                            and rec["achieved_rps"] >= 0.99 * rate):
                        break
                    top = rate
                best[tls].append(top)
        rows = [["https (--cacert)" if tls else "http", med(best[tls], "{:,.0f}")]
                for tls in (False, True)]
        self.tables.append(
            f"## 2. Highest sustained rate, TLS vs plain ({a.ladder_dur:g} s per step, "
            f"{a.ladder_conns} connections, ladder {', '.join(map(str, a.ladder))}; pass = "
            "client_ok and achieved >= 99 %)\n\n" + md_table(["url", "highest passing rps"],
                                                            rows))


def main() -> int:
    bindir = Path(sys.executable).parent
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke: 2 s runs, 1 round, 2 rates")
    ap.add_argument("--rounds", type=int, default=None, help="default 3, --quick 1")
    ap.add_argument("--sections", default="1,2")
    ap.add_argument("--out-dir", type=Path, default=HERE / "out" / "tls")
    ap.add_argument("--markdown", type=Path, help="also write the tables to this file")
    ap.add_argument("--port", type=int, default=8097, help="plain port; TLS is port + 1")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--rate", type=parse_rate, default=10000)
    ap.add_argument("--duration", type=float, default=None, help="section 1 (default 10)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--ladder", default=DEFAULT_LADDER)
    ap.add_argument("--ladder-duration", type=float, default=None, help="default 5")
    ap.add_argument("--ladder-connections", type=int, default=100)
    ap.add_argument("--pause", type=float, default=1.0)
    ap.add_argument("--crestline", default=str(bindir / "crestline")
                    if (bindir / "crestline").exists() else "crestline")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    a = ap.parse_args()
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.dur = a.duration or (2.0 if a.quick else 10.0)
    a.conns = a.connections
    a.ladder = [parse_rate(x) for x in a.ladder.split(",")][:2 if a.quick else None]
    a.ladder_dur = a.ladder_duration or (2.0 if a.quick else 5.0)
    a.ladder_conns = a.ladder_connections
    a.out_dir.mkdir(parents=True, exist_ok=True)
    nginx = TlsNginx(a.port, a.server_cpu, a.nginx)
    bench = TlsBench(a, nginx)
    try:
        nginx.start()
        for s in a.sections.split(","):
            getattr(bench, f"section{s.strip()}")()
    finally:
        nginx.stop()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    head = (f"# TLS vs plain HTTP/1.1 ({_dt.date.today()}, commit {commit}, "
            f"{platform.node()}, {platform.processor() or platform.machine()})\n\n"
            f"`{' '.join(sys.argv)}`")
    text = "\n\n".join([head] + bench.tables) + "\n"
    print(text)
    if a.markdown:
        a.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
