"""The one SLO evaluator: runs, search steps and reports read the same terms; a new kind of
bound is one class registered in one place."""

import math
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from crestline.errors import ConfigError
from crestline.measure.hdr import Hist
from crestline.measure.result import IntervalSnapshot, RunResult
from crestline.report.compare import compare
from crestline.report.figures import latency_bounds
from crestline.search.judge import StepJudge
from crestline.slo import registry
from crestline.slo.bound import Pool, TailBound
from crestline.slo.evaluate import check, evaluate
from crestline.slo.latency import percentile_of
from crestline.slo.parse import parse_slo, slo_from_dict, slo_text


def run_result(latencies_ms, errors=0, scheduled=None, gpu=None) -> RunResult:
    lat = np.asarray(latencies_ms, dtype=float) * 1e6
    r = RunResult({}, 0.0)
    r.hists["latency"] = Hist.from_values(lat.astype(np.int64))
    r.counters["scheduled"] = scheduled if scheduled is not None else len(lat)
    r.by_error["timeout"] = errors
    r.gpu = gpu
    return r


def check_slo(result, slo):
    from crestline.api import check_slo  # the run's own check: the evaluator on the run's pool

    return check_slo(result, slo)


def test_run_check_prints_each_term_as_before():
    r = run_result(np.full(1000, 5.39), errors=2, scheduled=1000,
                   gpu={"summary": {"0": {"util_pct": 71.0, "power_w": None}}})
    slo = parse_slo(["p99=50ms", "errors=0.1%", "gpu_util<=90%", "gpu_power<=300W"])
    out = check_slo(r, slo)
    assert out["slo"] == {"p99": "50ms", "errors": "0.1%", "gpu_util": "90%",
                          "gpu_power": "300W"}
    assert out["why"] == ["p99 5.39 ms <= 50 ms", "errors 0.200% > 0.100%",
                          "gpu_util 71% <= 90%", "gpu_power: no GPU figures, so not met"]
    assert out["met"] is False
    assert check_slo(r, parse_slo(["p99=50ms", "gpu_util<=90%"]))["met"] is True
    # nothing completed: not met, said the way it always was
    assert check_slo(run_result([]), parse_slo(["p99=1ms"]))["why"] == ["p99 0 ms > 1 ms"]


def test_terms_carry_value_bound_unit_and_met():
    pool = Pool({"latency": Hist.from_values(np.full(100, 20_000_000))}, errors=0,
                scheduled=100, gpu_windows=[{"0": {"util_pct": 95.0}}])
    t_lat, t_err, t_gpu = evaluate(parse_slo(["p99=10ms", "errors=0", "gpu_util<=90%"]), pool)
    assert (t_lat.name, t_lat.unit, t_lat.bound, t_lat.met) == ("p99", "ms", 10.0, False)
    assert t_lat.value == pytest.approx(20.0, rel=1e-3)
    assert t_lat.margin == pytest.approx(math.log(2.0), rel=1e-3)
    assert t_lat.versus.startswith("p99 20 ms vs 10 ms")
    assert (t_err.value, t_err.unit, t_err.met, t_err.text) == (0.0, "%", True,
                                                               "errors 0.000% <= 0.000%")
    assert (t_gpu.value, t_gpu.met, t_gpu.versus) == (95.0, False, "gpu_util 95% vs 90%")
    unmeasured = evaluate(parse_slo(["gpu_temp<=85C"]), Pool())[0]
    assert unmeasured.value is None and unmeasured.met is None
    assert check(parse_slo(["gpu_temp<=85C"]), Pool())["met"] is False


def test_percentile_names_are_public():
    assert [percentile_of(n) for n in ("p50", "p99", "p999", "p9999", "p99.5")] == [
        50.0, 99.0, 99.9, 99.99, 99.5]
    with pytest.raises(ConfigError):
        percentile_of("p100")


def test_reports_read_bounds_back_with_the_same_parser():
    d = {"p999": "80ms", "p99": "25ms", "errors": "0.1%", "gpu_util": "90%"}
    assert [(b.name, b.bound_ms, b.tail) for b in latency_bounds({"slo": d})] == [
        ("p99", 25.0, pytest.approx(0.01)), ("p999", 80.0, pytest.approx(0.001))]
    assert latency_bounds({"slo": {"nonsense": "1"}}) == () == latency_bounds({})
    assert slo_text(d) == "p999 <= 80ms, p99 <= 25ms, errors <= 0.1%, gpu_util <= 90%"
    assert slo_from_dict({"p99": "25ms"}) == slo_from_dict({"p99": "0.025s"})
    a = {"kind": "search", "capacity_rps": 100.0, "converged": True, "steps": [],
         "slo": {"p99": "25ms"}}
    notes = compare(a, a | {"slo": {"p99": "25.0ms"}})["notes"]
    assert not any("different SLOs" in n for n in notes)
    assert any("different SLOs" in n for n in compare(a, a | {"slo": {"p99": "26ms"}})["notes"])


# -- a new kind: one class, registered in one place ---------------------------------------------
@dataclass(frozen=True)
class TtfbBound(TailBound):
    """Time to first byte: a kind the tests register (the built-in stream kinds: slo/stream.py)."""

    percentile: float
    bound_ms: float

    help: ClassVar[str] = "ttfb_p99"
    hist_name: ClassVar[str] = "ttfb"

    @property
    def name(self) -> str:
        return f"ttfb_p{self.percentile:g}"

    @classmethod
    def claims(cls, key: str) -> bool:
        return key.startswith("ttfb_p")

    @classmethod
    def parse(cls, key, value, item):
        return cls(percentile_of(key.removeprefix("ttfb_")), float(value.removesuffix("ms")))

    def text(self) -> str:
        return f"{self.bound_ms:g}ms"

    def evaluate(self, pool):
        h = pool.hist(self.hist_name)
        value_ms = h.capped_values_at((self.percentile,))[0] / 1e6
        return self.term(value_ms, self.bound_ms, "ms", f"{value_ms:.3g} ms",
                         f"{self.bound_ms:g} ms", math.log(max(value_ms, 1e-6) / self.bound_ms),
                         h.total > 0 and value_ms <= self.bound_ms)


@pytest.fixture
def ttfb_kind():
    registry.register(TtfbBound)
    yield TtfbBound
    registry.unregister(TtfbBound)


def ttfb_interval(i, ttfb_ms, n=2000):
    s = IntervalSnapshot(i, i + 1.0, 1.0, scheduled=n, sent=n, completed=n, ok=n, inflight=2)
    fast = Hist.from_values(np.full(n, 2_000_000))
    s.hists = {"latency": fast, "service": fast.copy(), "send_lag": fast.copy(),
               "schedule_lag": Hist.from_values(np.full(n, 10_000)),
               "ttfb": Hist.from_values(np.full(n, int(ttfb_ms * 1e6)))}
    return s


def test_a_registered_kind_is_parsed_checked_and_judged(ttfb_kind):
    slo = parse_slo(["ttfb_p99=100ms", "p99=50ms"])
    assert slo.to_dict() == {"p99": "50ms", "ttfb_p99": "100ms"}  # after the built-in kinds
    assert slo.describe() == "p99 <= 50 ms, ttfb_p99 <= 100 ms"  # TailBound.describe
    with pytest.raises(ConfigError, match="or ttfb_p99"):
        parse_slo(["tpot=5ms"])
    # a run
    pool = Pool({"latency": Hist.from_values(np.full(100, 2_000_000)),
                 "ttfb": Hist.from_values(np.full(100, 150_000_000))})
    assert check(slo, pool) == {"slo": slo.to_dict(), "met": False,
                                "why": ["p99 2 ms <= 50 ms", "ttfb_p99 150 ms > 100 ms"]}
    # a search step: the judge tests it as a tail, with no change of its own
    judge = StepJudge(slo, 1.0, 1, 10.0, 30.0, 1.0)
    slow = [ttfb_interval(i, 150.0) for i in range(6)]
    v = next(v for k in range(2, 7) if (v := judge.judge(slow[:k], 2000.0)))
    assert v.verdict == "fail" and "ttfb_p99 150 ms vs 100 ms" in v.why, v.why
    judge = StepJudge(slo, 1.0, 1, 10.0, 30.0, 1.0)
    fast = [ttfb_interval(i, 20.0) for i in range(12)]
    v = next(v for k in range(2, 13) if (v := judge.judge(fast[:k], 2000.0)))
    assert v.verdict == "pass" and "ttfb_p99 20 ms vs 100 ms" in v.why, v.why
    # a report reads it back; only latency bounds go on a latency axis
    assert [b.name for b in latency_bounds({"slo": slo.to_dict()})] == ["p99"]


def test_the_judge_keeps_its_cache_out_of_the_snapshots():
    judge = StepJudge(parse_slo(["p99=25ms"]), 1.0, 1, 10.0, 30.0, 1.0)
    steps = [ttfb_interval(i, 1.0) for i in range(4)]
    judge.judge(steps, 2000.0)
    # snapshots have slots and no __dict__: a judge that stored anything on one would have
    # raised AttributeError above
    assert not any(hasattr(s, "__dict__") for s in steps)


def test_slo_modules_are_pure():
    code = ("import sys\nimport crestline.slo.evaluate, crestline.slo.registry, "
            "crestline.search.result, crestline.report.reader\n"
            "bad = [m for m in ('crestline._core', 'crestline.engine.stage', 'crestline.api', "
            "'crestline.capacity', 'crestline.search.policy', 'uvloop') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
