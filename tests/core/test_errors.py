"""Errors are counted by kind, and the run still ends on time with its results."""

import json
import subprocess
import sys
import threading
import time

import pytest

import crestline


def _check_conservation(d):
    r = d["requests"]
    unanswered = sum(v for k, v in r["by_error"].items() if not k.startswith("http_"))
    assert r["scheduled"] == r["completed"] + unanswered + r["shed"], r


def test_5xx_counted_as_http_5xx(target):
    t = target("--fail-every", "10", "--fail-status", "503")
    d = crestline.run(t.url, rate_rps=1000, duration_s=2, connections=8).to_dict()
    r = d["requests"]
    assert r["by_error"]["http_5xx"] == 200
    assert r["ok"] == 1800 and r["errors"] == 200
    assert r["error_messages"]["http_5xx"] == ["HTTP 503"]
    _check_conservation(d)


def test_4xx_counted_as_http_4xx(target):
    t = target("--fail-every", "4", "--fail-status", "404")
    d = crestline.run(t.url, rate_rps=500, duration_s=2, connections=8).to_dict()
    assert d["requests"]["by_error"]["http_4xx"] == 250


def test_resets_counted_as_read_errors_and_connections_reopen(target):
    t = target("--reset-every", "25")
    d = crestline.run(t.url, rate_rps=1000, duration_s=2, connections=8).to_dict()
    r = d["requests"]
    assert r["by_error"]["read"] == pytest.approx(80, abs=3), r
    assert r["ok"] == pytest.approx(1920, abs=3)
    assert r["by_error"]["connect"] == 0
    _check_conservation(d)


def test_hangs_counted_as_timeouts_and_the_run_ends_on_time(target):
    t = target("--hang-every", "50")
    t0 = time.monotonic()
    d = crestline.run(t.url, rate_rps=500, duration_s=2, connections=32, timeout_s=0.3).to_dict()
    wall = time.monotonic() - t0
    assert wall < 2 + 0.3 + 1.5, wall
    r = d["requests"]
    assert r["by_error"]["timeout"] == 20, r
    assert r["ok"] == 980
    assert "no complete response within 0.3 s" in r["error_messages"]["timeout"][0]
    _check_conservation(d)


def test_connection_close_responses_reconnect(target):
    t = target("--close-every", "3")
    d = crestline.run(t.url, rate_rps=1000, duration_s=2, connections=8).to_dict()
    assert d["requests"]["ok"] == 2000, d["requests"]


def test_chunked_responses(target):
    t = target("--chunked", "--delay-ms", "1")
    d = crestline.run(t.url, rate_rps=1000, duration_s=2, connections=8).to_dict()
    assert d["requests"]["ok"] == 2000, d["requests"]


def test_over_max_inflight_is_shed_not_dropped(target):
    t = target("--delay-ms", "200")
    d = crestline.run(t.url, rate_rps=500, duration_s=1, connections=2, max_inflight=10,
                      timeout_s=2).to_dict()
    r = d["requests"]
    assert r["shed"] > 300, r
    assert r["scheduled"] == 500
    _check_conservation(d)
    assert any("shed" in w for w in d["warnings"])


def test_server_dies_mid_run_connect_errors_counted_and_results_written(target, tmp_path):
    t = target()
    out, runlog = tmp_path / "r.json", tmp_path / "r.runlog"
    killer = threading.Timer(1.2, t.stop)
    killer.start()
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "crestline.cli", "run", t.url, "--rate", "500", "--duration", "3s",
         "--timeout", "0.5s", "--connections", "8", "--quiet", "--out", str(out),
         "--runlog", str(runlog)], capture_output=True, text=True, timeout=30)
    wall = time.monotonic() - t0
    killer.join()
    assert proc.returncode == 0, proc.stderr
    assert wall < 3 + 0.5 + 3, wall
    d = json.loads(out.read_text())
    r = d["requests"]
    assert r["ok"] > 400
    assert r["by_error"]["connect"] > 500, r
    assert "refused" in " ".join(r["error_messages"]["connect"]).lower()
    _check_conservation(d)
    assert runlog.stat().st_size > 0
