"""Session fixtures for the report tests: one real run and one real search against the
loopback target, shared by every test that reads them, and a headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_process import CLI
from servers import Target


@dataclass
class ReportFiles:
    run_json: Path
    run_runlog: Path
    search_json: Path
    search_runlog: Path


@pytest.fixture(scope="session")
def report_files(tmp_path_factory) -> ReportFiles:
    """`crestline run` and a short `crestline search` (5 steps) with --out and --runlog, against
    a 4-worker queue with exponential 2 ms service times (capacity near 1 700 rps at p99 20 ms).

    Session-scoped, so it makes its own Target: tests/conftest.py's `target` is per test."""
    d = tmp_path_factory.mktemp("report")
    target = Target("--servers", "4", "--service-ms", "2", "--service-dist", "exp",
                    max_seconds=300)
    try:
        url = target.url
        files = ReportFiles(d / "run.json", d / "run.runlog", d / "search.json",
                            d / "search.runlog")
        p = subprocess.run(CLI + ["run", url, "--rate", "500", "--duration", "3s", "--quiet",
                                  "--out", str(files.run_json), "--runlog", str(files.run_runlog)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        p = subprocess.run(
            CLI + ["search", url, "--slo", "p99=20ms", "--arrival", "poisson", "--seed", "1",
                   "--start-rate", "400", "--step-duration", "2s", "--interval", "0.5s",
                   "--warmup", "none",
                   "--max-steps", "5", "--max-time", "60s", "--max-rate", "800", "--quiet",
                   "--out", str(files.search_json), "--runlog", str(files.search_runlog)],
            capture_output=True, text=True, timeout=300)
        assert p.returncode in (0, 1), p.stderr[-2000:]  # 1: not converged within 5 steps
        return files
    finally:
        target.stop()


def _say(config, line: str) -> None:
    """A line on the terminal even under output capture: the install time belongs in CI logs."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        print(line, file=sys.stderr)
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    else:
        reporter.write_line(line)


@pytest.fixture(scope="session")
def chromium(pytestconfig) -> str:
    """Path of Debian's `chromium`, installed with apt-get when absent and we are root.

    Skips when it cannot be had, except under CI=true, where it fails: CI must run the browser
    test, never skip it silently.
    """
    path = shutil.which("chromium")
    if path is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        t0 = time.monotonic()
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        steps = (["apt-get", "update"],
                 ["apt-get", "install", "-y", "--no-install-recommends", "chromium"])
        for cmd in steps:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if p.returncode != 0:
                _say(pytestconfig, f"{' '.join(cmd)} failed ({p.returncode}): "
                                   f"{p.stderr.strip()[-500:]}")
                break
        path = shutil.which("chromium")
        _say(pytestconfig, f"chromium: apt-get install took {time.monotonic() - t0:.1f} s "
                           f"({'ok' if path else 'not installed'})")
    if path is None:
        why = "chromium is not on PATH and could not be installed (that needs apt-get and root)"
        if os.environ.get("CI") == "true":
            pytest.fail(why + "; CI must run the browser test")
        pytest.skip(why)
    return path
