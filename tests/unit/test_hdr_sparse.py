"""Interval histograms are held sparse (a long run keeps every interval): the same numbers as
the dense layout, a few KB instead of 270 KB each."""

import pickle

import numpy as np
from crestline._hdr import HdrRecorder

from crestline.measure.hdr import COUNTS_LEN, DISTRIBUTION_POINTS, LAYOUT, Hist


def _taken(seed, n=20_000):
    rng = np.random.default_rng(seed)
    rec = HdrRecorder(**LAYOUT)
    rec.record_array(rng.lognormal(np.log(2e6), 0.7, n).astype(np.int64))
    return rec.take()


def _dense(h: Hist) -> Hist:
    return Hist(np.array(h.counts), h.total, h.min_ns, h.max_ns, h.clamped)


def test_a_recorded_interval_is_sparse_and_reads_as_the_dense_one():
    h = Hist.from_take(_taken(1))
    idx, vals = h.nonzero()
    # a wide spread (lognormal, sigma 0.7) over thousands of buckets; dense is 270 KB
    assert 1000 < idx.size < 8000 and idx.nbytes + vals.nbytes == 6 * idx.size
    d = _dense(h)
    assert h.values_at(DISTRIBUTION_POINTS) == d.values_at(DISTRIBUTION_POINTS)
    assert h.summary_ms() == d.summary_ms()
    assert h.to_hdrh().equals(d.to_hdrh())
    assert not h.counts.flags.writeable and h.counts.shape == (COUNTS_LEN,)


def test_sums_and_pickles_are_exact():
    parts = [Hist.from_take(_taken(s)) for s in range(5)]
    total = Hist.empty()
    for p in parts:
        total.add(p)
    dense = Hist.empty()
    for p in parts:
        dense.add(_dense(p))
    assert np.array_equal(total.counts, dense.counts) and total.total == 100_000
    again = pickle.loads(pickle.dumps(parts[0]))
    assert np.array_equal(again.counts, parts[0].counts)
    assert again.nonzero()[0].size == parts[0].nonzero()[0].size
    c = parts[1].copy().add(parts[2])  # a sparse copy becomes a dense sum
    assert c.total == 40_000 and c.counts.flags.writeable
    assert parts[1].total == 20_000  # the original is untouched


def test_counts_past_32_bits_stay_exact():
    h = Hist.sparse([3, 7], [2**40, 5], total=2**40 + 5, min_ns=3, max_ns=8)
    assert h.counts[3] == 2**40 and Hist.empty().add(h).counts[3] == 2**40
