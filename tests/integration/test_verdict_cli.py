"""Verdicts a CI job can gate on, and `crestline compare`: real runs on loopback targets."""

import json

import pytest
from cli_process import crestline
from timing import timed


def test_run_slo_assert_exit_codes(target, tmp_path):
    t = target("--delay-ms", "5")
    out = tmp_path / "r.json"
    p = crestline("run", t.url, "--rate", "200", "--duration", "2s", "--slo", "p99=1ms",
                  "--slo", "errors=0", "--assert", "--out", out)
    assert p.returncode == 1, p.stderr
    d = json.loads(out.read_text())
    assert d["slo"] == {"p99": "1ms", "errors": "0%"} and d["slo_met"] is False
    assert d["slo_why"][0].startswith("p99 ") and d["slo_why"][0].endswith(" ms > 1 ms")
    assert "NOT met" in p.stdout

    def measure():
        return crestline("run", t.url, "--rate", "200", "--duration", "2s", "--slo",
                         "p99=50ms", "--assert", "--quiet", "--out", out)

    def exact(p):
        assert p.returncode in (0, 1), p.stderr

    def timing(p):  # a 5 ms server meets p99 <= 50 ms unless the machine stalls 50 ms
        assert p.returncode == 0, p.stderr
        assert json.loads(out.read_text())["slo_met"] is True

    timed(measure, exact, timing)
    # without --assert an unmet SLO is reported, not an exit code
    p = crestline("run", t.url, "--rate", "200", "--duration", "1s", "--slo", "p50=1ms",
                  "--quiet")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("args,expect", [
    (["--assert"], "--assert needs"),
    (["--slo", "gpu_util<=90%"], "add --gpu"),
    (["--gpu", "cuda:0"], "--gpu"),
    (["--gpu", "dcgm=ftp://host/metrics"], "http://"),
    (["--gpu-interval", "1ms", "--gpu", "nvml"], "--gpu-interval"),
])
def test_bad_verdict_and_gpu_options_are_exit_2_with_nothing_sent(listener, args, expect):
    p = crestline("run", f"http://127.0.0.1:{listener.port}/", "--rate", "100",
                  "--duration", "1s", *args)
    assert p.returncode == 2, p.stderr
    assert expect in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert listener.accepted() == 0


def test_compare_two_runs(target, tmp_path):
    fast, slow = target("--delay-ms", "2"), target("--delay-ms", "6")
    a, b = tmp_path / "a.json", tmp_path / "b.runlog"

    def measure():
        for t, args in ((fast, ["--out", a]), (slow, ["--runlog", b])):
            p = crestline("run", t.url, "--rate", "300", "--duration", "2s", "--quiet", *args)
            assert p.returncode == 0, p.stderr
        p = crestline("compare", a, b, "--json")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    def exact(c):
        p50 = {r["metric"]: r for r in c["rows"]}["latency p50"]
        assert p50["change_pct"] == pytest.approx(100 * (p50["b"] / p50["a"] - 1))
        assert any("different targets" in n for n in c["notes"])

    def timing(c):
        rows = {r["metric"]: r for r in c["rows"]}
        p50 = rows["latency p50"]
        assert 1.9 < p50["a"] < 4 and 5.9 < p50["b"] < 10
        assert rows["achieved"]["change_pct"] == pytest.approx(0, abs=3)

    timed(measure, exact, timing)
    text = crestline("compare", a, b).stdout
    assert "latency p50 (ms)" in text and "worse" in text


def test_compare_refuses_a_run_against_a_search(tmp_path):
    run = {"kind": "run", "url": "u", "requests": {}, "latency_ms": {}}
    search = {"kind": "search", "capacity_rps": 1.0, "steps": []}
    (tmp_path / "r.json").write_text(json.dumps(run))
    (tmp_path / "s.json").write_text(json.dumps(search))
    p = crestline("compare", tmp_path / "r.json", tmp_path / "s.json")
    assert p.returncode == 2 and "cannot compare a run with a search" in p.stderr


def test_compare_two_sweeps(target, tmp_path):
    # The same ladder against a 2 ms and a 6 ms server, the slower one's from its runlog.
    fast, slow = target("--delay-ms", "2"), target("--delay-ms", "6")
    a, b = tmp_path / "a.json", tmp_path / "b.runlog"
    for t, rates, args in ((fast, "100,200", ["--out", a]), (slow, "100,150,200",
                                                            ["--runlog", b])):
        p = crestline("sweep", t.url, "--rates", rates, "--step-duration", "1s", "--interval",
                      "0.25s", "--warmup", "none", "--slo", "p50=4ms", "--quiet", *args,
                      timeout=120)
        assert p.returncode in (0, 1), p.stderr
    p = crestline("compare", a, b, "--json")
    assert p.returncode == 0, p.stderr
    c = json.loads(p.stdout)
    assert c["kind"] == "sweep"
    rows = {r["metric"]: r for r in c["rows"]}
    # A's rates only (150 is B's alone), achieved and errors where both ran the rate
    assert {m for m in rows if " at " in m} == {
        f"{what} at {rate} rps" for what in ("p50", "p99", "achieved", "error rate")
        for rate in (100, 200)}
    for rate in (100, 200):
        p50 = rows[f"p50 at {rate} rps"]
        assert p50["change_pct"] == pytest.approx(100 * (p50["b"] / p50["a"] - 1))
        assert p50["a"] < p50["b"]  # 2 ms against 6 ms, by more than any machine's noise
    # the fast server meets p50 <= 4 ms on the whole ladder (its crossing is the top row the
    # client kept on schedule: a noisy host's late row is left out), the slow one at no rate
    kept = [row["rate_rps"] for row in json.loads(a.read_text())["rows"] if row["client_ok"]]
    assert rows["SLO crossing"]["a"] == (max(kept) if kept else None)
    assert rows["SLO crossing"]["b"] is None
    assert any(n.startswith("B has no crossing") for n in c["notes"])
    text = crestline("compare", a, b).stdout
    assert "SLO crossing (rps)" in text and "p50 at 100 rps (ms)" in text and "worse" in text
