"""Per-value and per-interval costs of the HDR path (pytest-benchmark; not part of tests/).

    python -m pytest bench/test_hdr_speed.py --benchmark-columns=min,median,max
"""

import numpy as np
import pytest
from crestline._hdr import HdrRecorder
from hdrh.histogram import HdrHistogram

from crestline.measure.hdr import HIGHEST_NS, LAYOUT, LOWEST_NS, SIGNIFICANT_DIGITS, Hist

N = 1_000_000
VALUES = np.random.default_rng(1).lognormal(np.log(2e6), 0.7, N).astype(np.int64)


def test_compiled_record_per_value(benchmark):
    rec = HdrRecorder(**LAYOUT)
    benchmark(rec.record_array, VALUES)  # divide by N for ns per record


def test_hdrhistogram_record_value_reference(benchmark):
    h = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
    vals = VALUES[:10_000].tolist()

    def record():
        for v in vals:
            h.record_value(v)

    benchmark(record)  # divide by 10_000 for ns per record


@pytest.fixture
def interval_recorder():
    rec = HdrRecorder(**LAYOUT)
    return rec


def test_interval_take(benchmark, interval_recorder):
    sample = VALUES[:100_000]

    def setup():
        interval_recorder.record_array(sample)
        return (), {}

    benchmark.pedantic(interval_recorder.take, setup=setup, rounds=50)


def test_interval_percentiles(benchmark):
    h = Hist.from_values(VALUES[:100_000])
    benchmark(h.values_at, (50.0, 90.0, 99.0, 99.9))


def test_interval_encode_v2(benchmark):
    h = Hist.from_values(VALUES[:100_000])
    benchmark(h.encode)
