"""Replaying a recorded trace through the real engine and CLI."""

import json
import subprocess

import numpy as np
from cli_process import CLI

from crestline.trace.format import TraceRecord, TraceWriter


def make_trace(path, n=800, rate=200.0, seed=5):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1e9 / rate, size=n)).astype(np.int64)
    t -= t[0]
    with TraceWriter(path, source="test") as w:
        for i, off in enumerate(t):
            w.write(TraceRecord(int(off), "POST", f"/v2/models/m{i % 2}/infer", [],
                                b'{"inputs": [1, 2, 3]}'))
    return t


def test_trace_replay_keeps_the_recorded_timing(target, tmp_path):
    t = target("--delay-ms", "1")
    offsets = make_trace(tmp_path / "t.cltrace")
    out = tmp_path / "r.json"
    p = subprocess.run(CLI + ["run", t.url, "--arrival", "trace", "--trace",
                              str(tmp_path / "t.cltrace"), "--speed", "2", "--out", str(out),
                              "--quiet"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["requests"]["scheduled"] == 800 and d["requests"]["ok"] == 800
    scaled = offsets / 2.0
    assert d["duration_s"] < scaled[-1] / 1e9 + 1.0
    # slots land in the interval their scaled timestamp says (boundaries are cut a few ms late)
    load = [i for i in d["intervals"] if not i["drain"]]
    expected = np.histogram(scaled / 1e9, bins=np.arange(0, len(load) + 1))[0]
    got = np.array([i["scheduled"] for i in load])
    assert np.all(np.abs(got - expected) <= 4), (got, expected)
    assert d["spec"]["workload"]["distinct_requests"] == 2


def test_trace_mix_under_poisson_at_any_rate(target, tmp_path):
    t = target()
    make_trace(tmp_path / "t.cltrace")
    out = tmp_path / "r.json"
    p = subprocess.run(CLI + ["run", t.url, "--arrival", "poisson", "--rate", "1500",
                              "--duration", "2s", "--seed", "2", "--trace",
                              str(tmp_path / "t.cltrace"), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["requests"]["errors"] == 0 and d["requests"]["ok"] == d["requests"]["scheduled"]
    assert abs(d["requests"]["scheduled"] - 3000) < 5 * np.sqrt(3000)


def test_trace_input_errors_exit_2(listener, tmp_path):
    url = f"http://127.0.0.1:{listener.port}/"
    bad = tmp_path / "bad.cltrace"
    bad.write_bytes(b"not a trace")
    for args, expect in ((["--arrival", "trace"], "needs --trace"),
                         (["--arrival", "trace", "--trace", str(tmp_path / "no")], "not found"),
                         (["--rate", "10", "--trace", str(bad)], "bad.cltrace")):
        p = subprocess.run(CLI + ["run", url] + args, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, (args, p.stderr)
        assert expect in p.stderr and "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    assert listener.accepted() == 0


def test_per_class_results_by_model_and_size(target, tmp_path):
    t = target("--delay-ms", "1")
    make_trace(tmp_path / "t.cltrace")
    out = tmp_path / "r.json"
    p = subprocess.run(CLI + ["run", t.url, "--arrival", "poisson", "--rate", "600",
                              "--duration", "2s", "--seed", "4", "--workers", "2",
                              "--connections", "16", "--trace", str(tmp_path / "t.cltrace"),
                              "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    by_class, by_size = d["by_class"], d["by_size"]
    assert set(by_class) == {"m0", "m1"}  # model names parsed from the KServe v2 paths
    total = d["requests"]["completed"]
    assert sum(c["completed"] for c in by_class.values()) == total  # merged across workers
    assert by_size == {"<=1KiB": by_size["<=1KiB"]} and by_size["<=1KiB"]["completed"] == total
    # the recorded mix is half and half
    assert abs(by_class["m0"]["completed"] / total - 0.5) < 0.06
    for c in by_class.values():
        assert 0.9 < c["latency_ms"]["p50"] < 10
    assert "by model/path" in p.stdout


def test_search_steps_break_latency_down_by_class(target, tmp_path):
    t = target("--servers", "4", "--service-ms", "2")
    make_trace(tmp_path / "t.cltrace")
    out = tmp_path / "s.json"
    p = subprocess.run(CLI + ["search", t.url, "--slo", "p90=50ms", "--trace",
                              str(tmp_path / "t.cltrace"), "--arrival", "fitted",
                              "--start-rate", "300", "--step-duration", "2s",
                              "--interval", "0.5s", "--max-steps", "2",
                              "--warmup", "none", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    steps = json.loads(out.read_text())["steps"]
    assert steps and all(set(s["by_class"]) == {"m0", "m1"} for s in steps)
    for s in steps:
        assert sum(c["completed"] for c in s["by_class"].values()) == s["samples"]
