"""The compiled HDR recorder against the hdrhistogram package's own record_value."""

import pickle

import numpy as np
import pytest
from crestline._hdr import HdrRecorder
from hdrh.histogram import HdrHistogram

from crestline.measure.hdr import HIGHEST_NS, LAYOUT, LOWEST_NS, SIGNIFICANT_DIGITS, Hist

PCTS = (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0)


def _values(seed=3, n=50_000):
    rng = np.random.default_rng(seed)
    dense = np.arange(0, 5000, dtype=np.int64)  # every value of the first buckets
    wide = (10 ** rng.uniform(0, np.log10(HIGHEST_NS), n)).astype(np.int64)
    lat = rng.lognormal(np.log(2e6), 0.8, n).astype(np.int64)  # ~2 ms latencies
    return np.concatenate([dense, wide, lat])


def _reference(values):
    h = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
    for v in values.tolist():
        assert h.record_value(v)
    return h


def test_recorder_counts_equal_hdrhistogram_record_value():
    values = _values()
    rec = HdrRecorder(**LAYOUT)
    rec.record_array(values)
    ours = Hist.from_take(rec.take())
    ref = _reference(values)
    assert np.array_equal(ours.counts, np.frombuffer(ref.counts, dtype=np.uint64))
    assert ours.total == ref.total_count == len(values)
    assert ours.to_hdrh().equals(ref)
    assert ours.min_ns == values.min() and ours.max_ns == values.max()


def test_percentiles_and_mean_equal_hdrhistogram():
    values = _values(seed=11)
    rec = HdrRecorder(**LAYOUT)
    for v in values[:20_000].tolist():  # the per-value entry point too
        rec.record_value(v)
    rec.record_array(values[20_000:])
    ours = Hist.from_take(rec.take())
    ref = _reference(values)
    assert ours.values_at(PCTS) == [ref.get_value_at_percentile(p) for p in PCTS]
    assert ours.mean_ns() == pytest.approx(ref.get_mean_value(), rel=1e-12)


def test_encode_decode_round_trip_through_hdrhistogram():
    values = _values(seed=5)
    ours = Hist.from_values(values)
    blob = ours.encode()
    assert blob.startswith("HISTF")
    decoded = HdrHistogram.decode(blob.encode())
    assert decoded.equals(_reference(values))
    back = Hist.decode(blob)
    assert np.array_equal(back.counts, ours.counts)
    assert back.values_at(PCTS) == ours.values_at(PCTS)


def test_out_of_range_values_are_clamped_and_counted():
    rec = HdrRecorder(**LAYOUT)
    rec.record_array(np.array([-5, 10, HIGHEST_NS + 1, HIGHEST_NS * 4], dtype=np.int64))
    h = Hist.from_take(rec.take())
    assert h.total == 4
    assert h.clamped == 3
    assert h.max_ns == HIGHEST_NS and h.min_ns == 0
    # take() cleared the recorder
    empty = Hist.from_take(rec.take())
    assert empty.total == 0 and not empty.counts.any()


def test_merge_is_exact_and_sparse_pickle_round_trips():
    a, b = _values(seed=1, n=5000), _values(seed=2, n=7000)
    merged = Hist.from_values(a).add(Hist.from_values(b))
    whole = Hist.from_values(np.concatenate([a, b]))
    assert np.array_equal(merged.counts, whole.counts)
    assert merged.values_at(PCTS) == whole.values_at(PCTS)
    again = pickle.loads(pickle.dumps(merged))
    assert np.array_equal(again.counts, merged.counts)
    assert (again.total, again.min_ns, again.max_ns) == (merged.total, merged.min_ns, merged.max_ns)
    # An interval of real latencies touches few buckets, so it pickles small.
    rng = np.random.default_rng(9)
    interval = Hist.from_values(rng.lognormal(np.log(2e6), 0.5, 10_000).astype(np.int64))
    assert len(pickle.dumps(interval)) < interval.counts.nbytes / 5


def test_one_microsecond_resolution_or_finer_up_to_an_hour():
    h = Hist.from_values([999_000, 1_000_000, 3_599_000_000_000])
    # 3 significant digits: values 1 µs apart near 1 ms stay apart
    assert h.values_at((30.0,))[0] < 1_000_000 <= h.values_at((60.0,))[0]
    assert h.clamped == 0
