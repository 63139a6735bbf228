"""SLO parsing and the MSER warm-up detector."""

import numpy as np
import pytest

from crestline.errors import ConfigError
from crestline.search.warmup import is_warm, mser_truncation
from crestline.slo.parse import parse_slo


def test_parse_slo():
    slo = parse_slo(["p99=25ms", "p999=0.08s", "errors=0.1%", "p50=3"])
    assert [(b.percentile, b.bound_ms) for b in slo.latency] == [
        (50.0, 3.0), (99.0, 25.0), (99.9, 80.0)]
    assert slo.max_error_rate == pytest.approx(0.001)
    assert slo.to_dict() == {"p50": "3ms", "p99": "25ms", "p999": "80ms", "errors": "0.1%"}
    assert parse_slo(["p99.5=10ms"]).latency[0].percentile == 99.5
    assert parse_slo(["errors=0.002"]).max_error_rate == 0.002


@pytest.mark.parametrize("bad,match", [
    (["p99"], "NAME=VALUE"), (["latency=5ms"], "unknown SLO"), (["p99=fast"], "cannot read"),
    (["errors=lots"], "errors=0.1%"), (["errors=150%"], "error rate"), ([], "at least one"),
    (["p100=5ms"], "between"),
])
def test_bad_slo(bad, match):
    with pytest.raises(ConfigError, match=match):
        parse_slo(bad)


def test_mser_finds_the_end_of_a_decaying_start():
    rng = np.random.default_rng(0)
    warm = 8.0 * np.exp(-np.arange(20) / 5.0) + 2.0  # slow start settling to 2
    steady = 2.0 + rng.normal(0, 0.05, 40)
    series = np.concatenate([warm, steady])
    d = mser_truncation(series)
    assert 10 <= d <= 25
    assert is_warm(series) is not None


def test_flat_series_is_steady_from_the_start_and_short_series_are_not_judged():
    rng = np.random.default_rng(1)
    assert mser_truncation(2.0 + rng.normal(0, 0.05, 40)) <= 5
    assert mser_truncation([5.0, 4.0, 3.0]) is None
    assert is_warm(2.0 + rng.normal(0, 0.05, 5)) is None  # too few steady points


def test_still_falling_series_is_not_warm():
    series = 10.0 * np.exp(-np.arange(30) / 20.0)  # still falling at the end
    assert is_warm(series) is None
