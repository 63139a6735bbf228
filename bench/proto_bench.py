"""What the protocol benches (tls_bench, h2_bench, grpc_bench) share: an nginx started from a
config text in its own prefix and pinned to a core, one crestline run read back from its
--out JSON, the ladder of rates, the common options, and the report's header."""
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
from collections.abc import Callable
from pathlib import Path

from engine_bench import HERE, Bench, Nginx, dig, log, parse_rate, port_in_use


def nginx_conf_with(listen: str) -> str:
    """bench/nginx.conf with its one `listen 127.0.0.1:PORT ...;` line replaced by `listen`
    (one or more directives, in the server block)."""
    conf, n = re.subn(r"listen\s+127\.0\.0\.1:\d+[^;]*;", listen, (HERE / "nginx.conf").read_text())
    assert n == 1, "bench/nginx.conf must have exactly one 'listen 127.0.0.1:PORT'"
    return conf


class ConfNginx(Nginx):
    """nginx from conf(prefix) in a private prefix (readable by nginx's worker), pinned to a
    core; up once every port in `ports` takes connections. prepare(prefix) writes what the
    config names (certificates, files to serve) first."""

    def __init__(self, port: int, cpu: str, nginx_bin: str, conf: Callable[[Path], str],
                 ports: list[int], prepare: Callable[[Path], None] | None = None):
        super().__init__(port, cpu, nginx_bin)
        self.conf, self.ports, self.prepare = conf, ports, prepare

    def start(self) -> None:
        for port in self.ports:
            if port_in_use(port):
                raise SystemExit(f"127.0.0.1:{port} is already in use; pick another --port")
        self.prefix = Path(tempfile.mkdtemp(prefix="crestline-bench-nginx-"))
        self.prefix.chmod(0o755)  # nginx's worker (not root) reads files from here
        (self.prefix / "logs").mkdir()
        if self.prepare:
            self.prepare(self.prefix)
        conf_path = self.prefix / "nginx.conf"
        conf_path.write_text(self.conf(self.prefix))
        subprocess.run(["taskset", "-c", self.cpu, self.bin, "-c", str(conf_path), "-p",
                        str(self.prefix), "-e", str(self.prefix / "logs" / "error.log")],
                       check=True, timeout=15)
        pid_file = self.prefix / "logs" / "nginx.pid"
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()
                   and all(port_in_use(p) for p in self.ports)):
            if time.monotonic() > deadline:
                raise SystemExit(f"nginx did not come up (see {self.prefix}/logs)")
            time.sleep(0.05)
        self.master = int(pid_file.read_text().strip())
        log(f"nginx master {self.master} on ports {self.ports} (core {self.cpu})")


class ProtoBench(Bench):
    def crestline_run(self, tag: str, url: str, rate: int, dur: float, extra: list[str]) -> dict:
        """One pinned `crestline run URL --rate --duration ... extra`, read back from --out."""
        a = self.a
        jpath = self.out / f"{tag}.json"
        cmd = [a.crestline, "run", url, "--rate", str(rate), "--duration", f"{dur:g}s",
               "--quiet", "--out", str(jpath), *extra]
        rec = self.run_client(tag, cmd, dur + 40, a.client_cpu)
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

    def h2load(self, tag: str, url: str, conns: int, streams: int, dur: float,
               extra: list[str] = ()) -> dict:
        """h2load (nghttp2-client), closed loop: conns connections x streams streams."""
        cmd = [self.a.h2load, "-c", str(conns), "-m", str(streams), "-D", f"{dur:g}", *extra,
               url]
        rec = self.run_client(tag, cmd, dur + 40, self.a.client_cpu)
        text = (self.out / f"{tag}.out").read_text(errors="replace")
        m = re.search(r"finished in [0-9.]+\w+, ([0-9.]+) req/s", text)
        ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", text)
        rec.update(tool="h2load", achieved_rps=float(m.group(1)) if m else None,
                   requests=int(ok.group(1)) if ok else None)
        self.note(rec)
        self.pause()
        return rec

    @staticmethod
    def ladder_top(run: Callable[[int], dict], ladder: list[int]) -> int | None:
        """The highest rate of the ladder that run(rate) sustains (client_ok and >= 99 %
        achieved), stepping up and stopping at the first that fails."""
        top = None
        for rate in ladder:
            rec = run(rate)
            if not (rec.get("client_ok") and rec.get("achieved_rps")
                    and rec["achieved_rps"] >= 0.99 * rate):
                break
            top = rate
        return top


def common_options(ap: argparse.ArgumentParser, port: int, ladder: str, out: str) -> None:
    bindir = Path(sys.executable).parent
    ap.add_argument("--quick", action="store_true", help="smoke: 2 s runs, 1 round, 2 rates")
    ap.add_argument("--rounds", type=int, default=None, help="default 3, --quick 1")
    ap.add_argument("--out-dir", type=Path, default=HERE / "out" / out)
    ap.add_argument("--markdown", type=Path, help="also write the tables to this file")
    ap.add_argument("--port", type=int, default=port)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--rate", type=parse_rate, default=10000)
    ap.add_argument("--duration", type=float, default=None, help="section 1 (default 10)")
    ap.add_argument("--ladder", default=ladder)
    ap.add_argument("--ladder-duration", type=float, default=None, help="default 5")
    ap.add_argument("--pause", type=float, default=1.0)
    ap.add_argument("--crestline", default=str(bindir / "crestline")
                    if (bindir / "crestline").exists() else "crestline")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--h2load", default=shutil.which("h2load"))


def settle_options(a: argparse.Namespace) -> None:
    """--quick's and the defaults' durations, rounds and ladder."""
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.dur = a.duration or (2.0 if a.quick else 10.0)
    a.ladder = [parse_rate(x) for x in a.ladder.split(",")][:2 if a.quick else None]
    a.ladder_dur = a.ladder_duration or (2.0 if a.quick else 5.0)
    a.out_dir.mkdir(parents=True, exist_ok=True)


def run_sections(bench: ProtoBench, sections: list[str]) -> None:
    """Start the bench's nginx, run bench.sectionN() for each N, always stop nginx."""
    try:
        bench.nginx.start()
        for s in sections:
            getattr(bench, f"section{s}")()
    finally:
        bench.nginx.stop()


def report(title: str, tables: list[str], markdown: Path | None) -> None:
    """The tables under one header naming the command, commit, machine and date."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    head = (f"# {title} ({_dt.date.today()}, commit {commit}, {platform.node()}, "
            f"{platform.processor() or platform.machine()})\n\n`{' '.join(sys.argv)}`")
    text = "\n\n".join([head] + tables) + "\n"
    print(text)
    if markdown:
        markdown.write_text(text)
