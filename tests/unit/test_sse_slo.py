"""Stream SLO kinds (crestline.slo.stream) and the stream figures (crestline.measure.stream):
parsing, goodput arithmetic, and the search judge on TTFT with no change of its own."""

from __future__ import annotations

import numpy as np
import pytest

from crestline.errors import ConfigError
from crestline.measure.hdr import Hist
from crestline.measure.result import IntervalSnapshot
from crestline.measure.stream import goodput_fraction, stream_summary
from crestline.search.judge import StepJudge
from crestline.slo.bound import Pool
from crestline.slo.evaluate import check
from crestline.slo.parse import parse_slo
from crestline.slo.stream import per_request_ns


def test_terms_parse_in_their_units_and_order():
    slo = parse_slo(["goodput=95%", "e2e_p99=10s", "tpot_p50=20", "itl_p99=50ms",
                     "ttft_p99=500ms", "p99=2s"])
    assert slo.to_dict() == {"p99": "2000ms", "ttft_p99": "500ms", "itl_p99": "50ms",
                             "tpot_p50": "20ms", "e2e_p99": "10000ms", "goodput": "95%"}
    assert per_request_ns(slo.bounds) == (500_000_000, 20_000_000, 10_000_000_000)
    assert per_request_ns(parse_slo(["ttft_p99=1s"]).bounds) is None
    for bad, why in [("goodput=120%", "goodput must lie in"), ("goodput=fast", "goodput=95%"),
                     ("ttft_p99=0ms", "ttft_p99 must be positive"), ("itl_p100=5ms", "p100")]:
        with pytest.raises(ConfigError, match=why):
            parse_slo([bad])


def test_goodput_arithmetic():
    slo = parse_slo(["goodput=90%"])
    # 95 good of 100 ended (2 failed, 1 shed, 2 too slow): 95% >= 90%
    res = check(slo, Pool(stream={"good": 95}, ended=100))
    assert res["met"] and res["why"] == ["goodput 95.00% >= 90.00%"]
    res = check(slo, Pool(stream={"good": 80}, ended=100))
    assert not res["met"] and res["why"] == ["goodput 80.00% < 90.00%"]
    assert check(slo, Pool())["met"] is False  # nothing ended: no evidence
    assert goodput_fraction({"good": 3}, 4) == 0.75 and goodput_fraction({}, 0) is None


def _snap(i: int, ttft_ms: float, n: int = 500) -> IntervalSnapshot:
    s = IntervalSnapshot(i, i + 1.0, 1.0, scheduled=n, sent=n, completed=n, ok=n)
    fast = Hist.from_values(np.full(n, 2_000_000))
    s.hists = {"latency": fast, "service": fast.copy(), "send_lag": fast.copy(),
               "schedule_lag": Hist.from_values(np.full(n, 10_000)),
               "ttft": Hist.from_values(np.full(n, int(ttft_ms * 1e6)))}
    s.stream = {"streams": n, "good": n if ttft_ms < 100 else 0}
    return s


def test_the_judge_tests_ttft_and_goodput_like_latency_and_errors():
    slo = parse_slo(["ttft_p99=100ms", "goodput=95%"])
    judge = StepJudge(slo, 1.0, 1, 10.0, 30.0, 1.0)
    slow = [_snap(i, 150.0) for i in range(8)]
    v = next(v for k in range(2, 9) if (v := judge.judge(slow[:k], 500.0)))
    assert v.verdict == "fail" and "ttft_p99 150 ms vs 100 ms" in v.why, v.why
    assert "goodput 0.00% vs 95.00%" in v.why
    judge = StepJudge(slo, 1.0, 1, 10.0, 30.0, 1.0)
    fast = [_snap(i, 20.0) for i in range(12)]
    v = next(v for k in range(2, 13) if (v := judge.judge(fast[:k], 500.0)))
    assert v.verdict == "pass", v.why


def test_summary_counts_tokens_both_ways():
    h = {n: Hist.from_values(np.array([1_000_000, 3_000_000])) for n in
         ("ttft", "ttft_sent", "itl", "tpot", "e2e")}
    h["output_tokens"] = Hist.from_values(np.array([10, 30]))
    counts = {"streams": 2, "good": 1, "tokens": 40, "reasoning_tokens": 0, "no_token": 0,
              "no_done": 0, "usage": 1, "usage_mismatch": 1}
    d = stream_summary(h, counts, 2.0, 4)
    assert d["output_tokens"]["total"] == 40 and d["output_tokens"]["per_s"] == 20
    assert d["stream"]["goodput_rps"] == 0.5 and d["stream"]["goodput_fraction"] == 0.25
    assert (d["stream"]["usage_counted"], d["stream"]["events_counted"]) == (1, 1)
    assert d["stream"]["usage_mismatch"] == 1 and d["ttft_ms"]["max"] == pytest.approx(3.0)
    assert stream_summary(h, {"streams": 0}, 2.0, 4) == {}


def test_stream_figures_survive_the_runlog(tmp_path):
    from crestline.measure.runlog import RunlogWriter, read_runlog

    snap = _snap(0, 20.0, n=50)
    snap.hists["itl"] = Hist.from_values(np.arange(1, 400) * 100_000)
    log = RunlogWriter(str(tmp_path / "r.runlog"), {"url": "http://127.0.0.1:1/"}, 0.0)
    log.interval(snap)
    log.close()
    _, (back,), _ = read_runlog(str(tmp_path / "r.runlog"))
    assert back.stream == snap.stream
    for name in ("ttft", "itl"):
        assert back.hists[name].total == snap.hists[name].total
        assert back.hists[name].max_ns == snap.hists[name].max_ns
