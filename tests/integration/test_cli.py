"""The `crestline` command end to end: outputs, bad input, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time

import msgpack
import pytest
from cli_process import CLI, crestline
from hdrh.log import HistogramLogReader

from crestline.measure.hdr import HIGHEST_NS, LOWEST_NS, SIGNIFICANT_DIGITS
from crestline.measure.runlog import read_runlog
from crestline.report.reader import load


def test_run_writes_json_contract_runlog_and_hdr_log(target, tmp_path):
    t = target("--delay-ms", "1")
    out, runlog, hlog = tmp_path / "r.json", tmp_path / "r.runlog", tmp_path / "r.hlog"
    p = crestline("run", t.url, "--rate", "1k", "--duration", "3s", "--arrival", "poisson",
                  "--seed", "1", "--connections", "8", "--out", str(out), "--runlog", str(runlog),
                  "--hdr-log", str(hlog), "-H", "X-Test: 1", "--method", "POST", "--body", "{}")
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    for key in ("offered_rps", "achieved_rps", "duration_s", "requests", "latency_ms", "service_ms",
                "send_lag_ms", "client_ok", "intervals"):
        assert key in d
    for key in ("sent", "ok", "errors", "shed", "by_error"):
        assert key in d["requests"]
    for key in ("latency_ms", "service_ms", "send_lag_ms"):
        assert set(d[key]) >= {"p50", "p90", "p99", "p999", "max", "mean"}
        assert d[key]["p50"] <= d[key]["p99"] <= d[key]["p999"] <= d[key]["max"]
    for iv in d["intervals"]:
        assert set(iv) >= {"t_s", "sent", "ok", "errors", "inflight", "latency_ms"}
        assert set(iv["latency_ms"]) >= {"p50", "p99"}
    assert d["duration_s"] == pytest.approx(3.0, abs=0.05)
    assert d["requests"]["ok"] == d["requests"]["sent"] > 2500
    # the client's own CPU, measured per interval (1k rps costs well under a core), and the
    # host's, which includes the target's
    cpu = d["client_cpu"]
    assert 0 < cpu["mean_cores"] < 1 and cpu["host_cores"] >= 1
    assert cpu["host_busy_cores"] is None or cpu["host_busy_cores"] > 0
    assert all(iv["client_cpu_cores"] is not None for iv in d["intervals"] if not iv["drain"])
    # live lines on stderr, the summary table on stdout
    assert "achieved/s" in p.stderr and "latency ms" in p.stdout

    header, intervals, summary = read_runlog(str(runlog))
    assert header["spec"]["rate_rps"] == 1000.0
    assert len(intervals) == len(d["intervals"])
    assert sum(s.latency.total for s in intervals) == d["requests"]["completed"]
    assert summary["requests"]["ok"] == d["requests"]["ok"]
    # The summary record leaves the intervals to the interval records (one line an interval,
    # not all of them again at the end); reading the runlog puts them back, as --out wrote them.
    assert summary["intervals"] is None
    assert load(str(runlog)) == d
    # exact extremes survive the runlog (the V2 encoding alone would round them to buckets)
    assert max(s.latency.max_ns for s in intervals) / 1e6 == d["latency_ms"]["max"]
    assert sum(s.hists["send_lag"].clamped for s in intervals) == d["clamped"]["send_lag"]

    # The interval log is readable by HdrHistogram's own log reader.
    reader = HistogramLogReader(str(hlog), _template())
    total, n = 0, 0
    while (h := reader.get_next_interval_histogram()) is not None:
        total += h.get_total_count()
        n += 1
    assert n == 3 * len(intervals)  # latency, service, send_lag per interval
    assert total == 3 * d["requests"]["completed"]
    text = hlog.read_text()
    assert text.startswith("#[Histogram log format version 1.3]")
    assert "Tag=service," in text and "Tag=send_lag," in text


def _template():
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)


@pytest.mark.parametrize("args,expect", [
    (["run", "not a url", "--rate", "10"], "malformed URL"),
    (["run", "ftp://127.0.0.1/", "--rate", "10"], "http://"),
    (["run", "{url}", "--rate", "10", "--insecure"], "--insecure applies only to https://"),
    (["run", "{url}", "--rate", "lots"], "cannot read --rate"),
    (["run", "{url}", "--rate", "10", "--duration", "forever"], "cannot read --duration"),
    (["run", "{url}", "--rate", "10", "--body", "@/nonexistent/body.json"], "not found"),
    (["run", "{url}", "--rate", "10", "--connections", "0"], "--connections"),
    (["run", "{url}"], "--rate"),
    (["run", "{url}", "--rate", "10", "--bogus"], "unrecognized arguments"),
    # every output file is checked before any load: a long run never ends with its result lost
    (["run", "{url}", "--rate", "10", "--out", "/nonexistent/dir/r.json"], "--out"),
    (["run", "{url}", "--rate", "10", "--runlog", "{tmp}"], "is a folder"),
    (["run", "{url}", "--rate", "10", "--hdr-log", "/nonexistent/r.hlog"], "--hdr-log"),
    (["search", "{url}", "--slo", "p99=10ms", "--runlog", "/nonexistent/s.runlog"],
     "--runlog"),
])
def test_bad_input_is_one_line_exit_2_and_sends_nothing(listener, args, expect, tmp_path):
    url = f"http://127.0.0.1:{listener.port}/"
    p = crestline(*[a.replace("{url}", url).replace("{tmp}", str(tmp_path)) for a in args])
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crestline: error:"), p.stderr
    assert expect in lines[0]
    assert "Traceback" not in p.stderr
    assert listener.accepted() == 0


def test_an_unexpected_failure_is_one_line_exit_3_and_debug_shows_the_traceback(target):
    # /dev/full passes the check (it is writable) and then fails the write: not the user's
    # input, so exit 3, one line; --debug gives the traceback.
    t = target()
    args = ["run", t.url, "--rate", "20", "--duration", "1s", "--quiet", "--out", "/dev/full"]
    p = crestline(*args)
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left" in lines[0] and "--debug" in lines[0], p.stderr
    p = crestline("--debug", *args)
    assert p.returncode != 0 and "Traceback" in p.stderr


def test_refused_target_is_a_usage_error(closed_port):
    p = crestline("run", f"http://127.0.0.1:{closed_port}/", "--rate", "10", "--duration", "1s")
    assert p.returncode == 2
    assert p.stderr.strip() == (
        f"crestline: error: cannot connect to 127.0.0.1:{closed_port} (Connection refused): "
        "is the server running and the URL right?")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_keeps_completed_intervals_and_writes_results(target, tmp_path, sig):
    t = target()
    out, runlog = tmp_path / "r.json", tmp_path / "r.runlog"
    proc = subprocess.Popen(CLI + ["run", t.url, "--rate", "500", "--duration", "60s",
                                   "--out", str(out), "--runlog", str(runlog), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until two intervals are on disk
        if runlog.exists() and len(_records(runlog)) >= 3:
            break
        time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 5  # drain at most 1 s after a stop, then the outputs
    d = json.loads(out.read_text())
    assert d["interrupted"] is True
    assert 1.5 < d["duration_s"] < 10
    assert d["requests"]["ok"] > 500
    header, intervals, summary = read_runlog(str(runlog))
    assert len([s for s in intervals if not s.drain]) >= 2
    assert summary is not None and summary["interrupted"] is True


def _records(path):
    with open(path, "rb") as f:
        return list(msgpack.Unpacker(f, raw=False))


@pytest.mark.parametrize("command", [
    ["run"], ["search"], ["demo"], ["demo-server"], ["target"], ["trace"], ["trace", "import"],
    ["trace", "info"], ["record"], ["report"], ["compare"]])
def test_help_teaches_with_examples(command):
    p = crestline(*command, "--help")
    assert p.returncode == 0, p.stderr
    assert "examples:" in p.stdout, command


def test_version():
    v = crestline("--version")
    assert v.returncode == 0 and v.stdout.startswith("crestline ")


def test_demo_run_end_to_end(tmp_path):
    out = tmp_path / "demo.json"
    p = crestline("demo", "--run", "--duration", "2s", "--rate", "100", "--out", str(out),
                  "--html", "")
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    # Poisson arrivals at 100 rps for 2 s, every request drawn from the demo's payload mix
    assert 120 < d["requests"]["scheduled"] < 300
    assert d["requests"]["ok"] == d["requests"]["scheduled"]
    assert len(d["by_size"]) >= 2  # the mix spans several body-size classes


def test_demo_quick_search_and_report(tmp_path):
    out, html = tmp_path / "demo.json", tmp_path / "demo.html"
    t0 = time.monotonic()
    p = crestline("demo", "--quick", "--out", str(out), "--html", str(html), timeout=300)
    elapsed_s = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    # --quick has a 70 s load budget: on a busy machine it may end there, and then the
    # capacity is the highest confirmed rate, null when no confirmation ran yet (the highest
    # pass is still the bracket's low end)
    assert r["converged"] or r["reason"] == "time budget spent (--max-time)", r["reason"]
    best = r["capacity_rps"] if r["converged"] or r["capacity_rps"] else r["bracket"][0]
    assert 300 <= best <= 5000, (r["capacity_rps"], r["bracket"])
    assert r["warmup_s"] > 0  # the demo server is slow for its first seconds
    # every interval is labelled: its step (or none, for a warm-up hold), and whether it was
    # warm-up. The warm-up comes first and its intervals cover warmup_s, whichever way the
    # policy found it (a steady hold, a cold overload set aside, or a later speed-up).
    ivs = r["intervals"]
    labels = [iv["step"] for iv in ivs]
    assert set(labels) - {None} == set(range(len(r["steps"])))
    warm = [iv["warmup"] for iv in ivs]
    assert warm[0] and not any(warm[warm.index(False):]), warm
    warm_s = sum(iv["dur_s"] for iv in ivs if iv["warmup"])
    assert warm_s >= r["warmup_s"] - 1.5, (warm_s, r["warmup_s"])
    assert any(s["verdict"] == "fail" for s in r["steps"])
    assert "capacity" in p.stdout and "report:" in p.stderr
    assert html.stat().st_size > 20_000 and b"<svg" in html.read_bytes()
    assert elapsed_s < 150, elapsed_s  # about 80 s on a quiet 2-core machine


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "crestline")
    p = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert p.returncode == 0
