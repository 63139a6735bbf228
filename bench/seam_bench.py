#!/usr/bin/env python3
"""A/B: the compiled core before the transport seam (OLD) against the current one (NEW).

Both builds run the same Python layer (src/ of --python-from, default HEAD), so the only
difference is ext/ and setup.py: OLD from --old (5c47e6c, the last commit before the seam),
NEW from the working tree (or --new REV). Each is built with its own setup.py under
--out-dir and run as `python -m crestline.cli run` with PYTHONPATH pointing at its tree.

Per round, against one loopback nginx (bench/nginx.conf, pinned to --server-cpu), client
pinned to --client-cpu, OLD and NEW alternate (ABBA order across rounds):
  fixed:  --rate (default 20k) for --duration s: client CPU (user+sys, /usr/bin/time) per ok
          request, whole process, start-up included
  max:    offered --max-rate (default 400k, far past what one core sends) for --max-duration
          s: achieved rps (completions per second of load) is the client's ceiling
Figures are median [min..max] over --rounds; the ratio column is NEW/OLD of the medians, and
the per-pair ratios' range shows whether the difference stands above the noise. Other work on
the machine only ever slows a run down, so the best of the rounds (highest rps, lowest
µs/request) is given too: on a shared machine it is the steadier estimate of what a build can do.

  .venv/bin/python bench/seam_bench.py                  # 6 rounds, ~4 min
  .venv/bin/python bench/seam_bench.py --rounds 1 --duration 3 --max-duration 2   # smoke
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from engine_bench import Nginx, log, md_table, med, parse_rate, proc_cpu_s  # noqa: E402


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def extract(rev: str, paths: list[str], into: Path) -> None:
    data = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, *paths], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")


def build(name: str, core_rev: str | None, python_rev: str, out: Path) -> Path:
    """A tree with python_rev's src/ and core_rev's ext/ + setup.py (None: the work tree),
    built in place; returns its src/ for PYTHONPATH."""
    tree = out / name
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    extract(python_rev, ["src", "pyproject.toml"], tree)
    if core_rev is None:
        shutil.copytree(REPO / "ext", tree / "ext", ignore=shutil.ignore_patterns("*.c", "*.html"))
        shutil.copy2(REPO / "setup.py", tree / "setup.py")
    else:
        extract(core_rev, ["ext", "setup.py"], tree)
    log(f"building {name} core ({core_rev or 'work tree'}) on src/ of {python_rev} in {tree}")
    subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace", "-q"],
        cwd=tree,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=open(tree / "build.log", "w"),
    )
    src = tree / "src"
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import crestline._core as c, sys; print(c.__file__); "
            "print('seam' if 'crestline._seam' in sys.modules else 'no seam')",
        ],
        env={**os.environ, "PYTHONPATH": str(src)},
        check=True,
        capture_output=True,
        text=True,
    )
    core_file, seam = probe.stdout.split("\n")[:2]
    assert core_file.startswith(str(src)), f"{name} imported the wrong core: {core_file}"
    log(f"{name}: {core_file} ({seam})")
    return src


def run_one(
    a, tag: str, src: Path, url: str, rate: int, dur: float, conns: int, nginx: Nginx
) -> dict:
    jpath, tpath = a.out_dir / f"{tag}.json", a.out_dir / f"{tag}.time"
    for p in (jpath, tpath):
        p.unlink(missing_ok=True)
    cmd = [
        "timeout",
        "-k",
        "5",
        str(int(dur + 40)),
        "taskset",
        "-c",
        a.client_cpu,
        "/usr/bin/time",
        "-f",
        "%U %S %e %M",
        "-o",
        str(tpath),
        sys.executable,
        "-m",
        "crestline.cli",
        "run",
        url,
        "--rate",
        str(rate),
        "--duration",
        f"{dur:g}s",
        "--connections",
        str(conns),
        "--quiet",
        "--out",
        str(jpath),
    ]
    srv0 = proc_cpu_s(nginx.worker_pid())
    with open(a.out_dir / f"{tag}.out", "wb") as f:
        rc = subprocess.run(
            cmd,
            env={**os.environ, "PYTHONPATH": str(src)},
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        ).returncode
    srv1 = proc_cpu_s(nginx.worker_pid())
    rec = {"tag": tag, "rc": rc, "rate": rate, "cmd": " ".join(cmd)}
    try:
        u, s, e, m = tpath.read_text().split()[-4:]
        rec.update(cpu_s=float(u) + float(s), wall_s=float(e), rss_kb=int(m))
        j = json.loads(jpath.read_text())
        ok = j["requests"]["ok"]
        rec.update(
            ok=ok,
            errors=j["requests"]["errors"],
            achieved_rps=j["achieved_rps"],
            client_ok=j.get("client_ok"),
            send_p99=j["send_lag_ms"]["p99"],
            us_per_req=rec["cpu_s"] / ok * 1e6 if ok else None,
            srv_cpu_s=None if srv0 is None or srv1 is None else srv1 - srv0,
        )
    except (OSError, ValueError, KeyError) as e:
        rec["error"] = repr(e)
    log(
        f"{tag}: rc={rc} ok={rec.get('ok')} rps={rec.get('achieved_rps') or 0:.0f} "
        f"cpu={rec.get('cpu_s')}s us/req={rec.get('us_per_req') or 0:.2f} "
        f"send_p99={rec.get('send_p99')} client_ok={rec.get('client_ok')}"
    )
    return rec


def ratio_range(old: list, new: list) -> str:
    """Pair-by-pair NEW/OLD: median [min..max]."""
    rs = [n / o for o, n in zip(old, new, strict=True) if o and n]
    return med(rs, "{:.3f}") if rs else "-"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--old", default="5c47e6c", help="core before the seam (default 5c47e6c)")
    ap.add_argument("--new", default=None, help="core rev to compare (default: the work tree)")
    ap.add_argument("--python-from", default="HEAD", help="src/ both builds run (default HEAD)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--measures", default="fixed,max", help="fixed, max or both (default)")
    ap.add_argument("--rate", type=parse_rate, default=20000)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--max-rate", type=parse_rate, default=400000)
    ap.add_argument("--max-duration", type=float, default=5.0)
    ap.add_argument("--max-connections", type=int, default=100)
    ap.add_argument("--port", type=int, default=8098)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--out-dir", type=Path, default=HERE / "out" / "seam")
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    a = ap.parse_args()
    a.out_dir = a.out_dir.resolve()
    a.out_dir.mkdir(parents=True, exist_ok=True)

    builds = {
        "old": build("old", a.old, a.python_from, a.out_dir),
        "new": build("new", a.new, a.python_from, a.out_dir),
    }
    nginx = Nginx(a.port, a.server_cpu, a.nginx)
    res = {(b, m): [] for b in builds for m in ("fixed", "max")}
    try:
        nginx.start()
        measures = a.measures.split(",")
        for r in range(a.rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for b in order if "fixed" in measures else ():
                res[b, "fixed"].append(
                    run_one(
                        a,
                        f"{b}_fixed_r{r}",
                        builds[b],
                        nginx.url,
                        a.rate,
                        a.duration,
                        a.connections,
                        nginx,
                    )
                )
            for b in order if "max" in measures else ():
                res[b, "max"].append(
                    run_one(
                        a,
                        f"{b}_max_r{r}",
                        builds[b],
                        nginx.url,
                        a.max_rate,
                        a.max_duration,
                        a.max_connections,
                        nginx,
                    )
                )
    finally:
        nginx.stop()

    def col(b, m, k):
        return [x.get(k) for x in res[b, m]]

    rows = []
    for label, m, k, fmt, best in (
        (f"client CPU µs/request at {a.rate:,} rps", "fixed", "us_per_req", "{:.2f}", min),
        (f"achieved rps at {a.rate:,} rps", "fixed", "achieved_rps", "{:.0f}", max),
        (f"send lag p99 ms at {a.rate:,} rps", "fixed", "send_p99", "{:.3f}", min),
        (f"max achieved rps (offered {a.max_rate:,})", "max", "achieved_rps", "{:.0f}", max),
        ("client CPU µs/request at max", "max", "us_per_req", "{:.2f}", min),
    ):
        o, n = col("old", m, k), col("new", m, k)
        o_ok, n_ok = [v for v in o if v is not None], [v for v in n if v is not None]
        if not o_ok or not n_ok:
            continue
        mo, mn = statistics.median(o_ok), statistics.median(n_ok)
        bo, bn = best(o_ok), best(n_ok)
        rows.append(
            [
                label,
                med(o, fmt),
                med(n, fmt),
                f"{mn / mo:.3f}" if mo else "-",
                ratio_range(o, n),
                f"{fmt.format(bo)} / {fmt.format(bn)}",
                f"{bn / bo:.3f}" if bo else "-",
            ]
        )
    new_label = a.new or f"work tree on {git('rev-parse', '--short', 'HEAD')}"
    text = (
        f"{_dt.datetime.now().isoformat(timespec='seconds')}: OLD = core of {a.old}, "
        f"NEW = core of {new_label}, both on src/ of {a.python_from}; {a.rounds} rounds, "
        f"ABBA order; fixed {a.duration:g} s x {a.connections} connections, max "
        f"{a.max_duration:g} s x {a.max_connections} connections; client on core "
        f"{a.client_cpu}, nginx on core {a.server_cpu}.\n\n"
        + md_table(
            [
                "measure",
                "OLD median [min..max]",
                "NEW median [min..max]",
                "NEW/OLD (medians)",
                "NEW/OLD per pair",
                "best OLD / NEW",
                "NEW/OLD (best)",
            ],
            rows,
        )
        + "\n"
    )
    print(text)
    (a.out_dir / "runs.json").write_text(
        json.dumps({f"{b}_{m}": v for (b, m), v in res.items()}, indent=1)
    )
    if a.markdown:
        a.markdown.write_text(text)
    bad = [x["tag"] for v in res.values() for x in v if x.get("rc") or x.get("error")]
    if bad:
        log(f"runs with a non-zero exit or no result: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
