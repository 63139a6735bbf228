"""Stream figures in a search step record and a sweep row: the measured intervals' stream
histograms pooled exactly, tokens/s and goodput over the measured seconds."""

from __future__ import annotations

import numpy as np
import pytest

from crestline.measure.hdr import Hist
from crestline.measure.result import IntervalSnapshot
from crestline.search.judge import Verdict
from crestline.search.policy import Step
from crestline.search.sweep import sweep_row

SPEC = {"url": "http://127.0.0.1:1/", "arrival": "poisson", "workers": 1,
        "max_schedule_lag_p99_ms": 1.0, "batch_window_s": 0.0, "min_issued_ratio": 0.99}


def _snap(i: int, ttft_ms: float, n: int = 100, tokens: int = 10, good: int | None = None,
          errors: int = 0) -> IntervalSnapshot:
    """An interval of n streams, each with TTFT ttft_ms, `tokens` tokens 2 ms apart."""
    s = IntervalSnapshot(i, i + 1.0, 1.0, scheduled=n + errors, sent=n + errors,
                         completed=n, ok=n)
    s.by_error["timeout"] = errors
    lat = Hist.from_values(np.full(n, int((ttft_ms + 2 * tokens) * 1e6)))
    s.hists = {"latency": lat, "service": lat.copy(), "send_lag": Hist.from_values(
        np.full(n, 10_000)), "schedule_lag": Hist.from_values(np.full(n, 10_000)),
        "ttft": Hist.from_values(np.full(n, int(ttft_ms * 1e6))),
        "ttft_sent": Hist.from_values(np.full(n, int(ttft_ms * 1e6))),
        "itl": Hist.from_values(np.full(n * (tokens - 1), 2_000_000)),
        "tpot": Hist.from_values(np.full(n, 2_000_000)),
        "e2e": lat.copy(),
        "output_tokens": Hist.from_values(np.full(n, tokens))}
    s.stream = {"streams": n, "good": n if good is None else good, "tokens": n * tokens,
                "reasoning_tokens": 0, "no_token": 0, "no_done": 0, "usage": n,
                "usage_mismatch": 0}
    return s


def test_a_step_record_pools_its_measured_intervals():
    # a settle interval with a slow first token, then three measured ones at 10, 10, 40 ms
    settle = _snap(0, 500.0)
    measured = [_snap(1, 10.0), _snap(2, 10.0, good=50, errors=10), _snap(3, 40.0)]
    step = Step(100.0, "probe", [settle, *measured],
                Verdict("pass", "ttft_p99 ok", -0.5, measured=measured))
    d = step.to_dict()
    # the settle interval's 500 ms is left out; 40 ms is the top third of the measured streams
    assert d["ttft_ms"]["max"] == pytest.approx(40.0, rel=0.01)
    assert d["ttft_ms"]["p50"] == pytest.approx(10.0, rel=0.01)
    assert d["ttft_ms"]["p99"] == pytest.approx(40.0, rel=0.01)
    assert d["itl_ms"]["p99"] == pytest.approx(2.0, rel=0.01)
    assert d["tpot_ms"]["p50"] == pytest.approx(2.0, rel=0.01)
    assert d["output_tokens"]["total"] == 3000
    assert d["output_tokens"]["per_s"] == pytest.approx(1000.0)  # over 3 measured seconds
    s = d["stream"]
    assert s["streams"] == 300 and s["good"] == 250
    assert s["goodput_rps"] == pytest.approx(250 / 3)
    assert s["goodput_fraction"] == pytest.approx(250 / 310)  # 10 timeouts ended too


def test_a_step_without_streams_has_no_stream_keys():
    plain = _snap(1, 10.0)
    plain.stream = {}
    for name in ("ttft", "ttft_sent", "itl", "tpot", "e2e", "output_tokens"):
        del plain.hists[name]
    d = Step(50.0, "probe", [plain], Verdict("pass", "", -1.0, measured=[plain])).to_dict()
    assert not {"ttft_ms", "itl_ms", "output_tokens", "stream"} & set(d)
    assert d["latency_ms"]["p50"] > 0


def test_a_sweep_row_carries_ttft_itl_tokens_and_goodput():
    snaps = [_snap(0, 900.0), _snap(1, 20.0), _snap(2, 30.0, good=0)]
    row = sweep_row(200.0, snaps, SPEC, 1, None)
    assert row["ttft_ms"]["max"] == pytest.approx(30.0, rel=0.01)  # settle interval left out
    assert row["ttft_ms"]["p50"] == pytest.approx(20.0, rel=0.01)
    assert row["e2e_ms"]["p50"] == pytest.approx(40.0, rel=0.01)
    assert row["output_tokens"]["per_s"] == pytest.approx(1000.0)
    assert row["stream"]["goodput_fraction"] == pytest.approx(0.5)
    assert row["stream"]["goodput_rps"] == pytest.approx(50.0)
