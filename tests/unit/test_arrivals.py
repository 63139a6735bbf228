"""Arrival processes: constant from the index, Poisson that passes goodness-of-fit tests."""

import numpy as np
import pytest
from scipy import stats

from crestline.engine.arrivals import (
    ARRIVALS,
    Arrival,
    arrival_for,
    constant_offsets_ns,
    poisson_offsets_ns,
)
from crestline.errors import ConfigError


def _all(chunks):
    return np.concatenate(list(chunks))


def test_constant_is_computed_from_the_index_not_summed():
    rate = 3000.0  # period 333_333.33 ns: summing rounded gaps would drift
    t = _all(constant_offsets_ns(rate, 100.0, chunk=1000))
    assert len(t) == 300_000
    i = np.arange(len(t))
    assert np.array_equal(t, np.round(i * 1e9 / rate).astype(np.int64))
    assert t[-1] == round(299_999 * 1e9 / rate)


def test_constant_worker_shares_interleave_into_the_whole_schedule():
    whole = _all(constant_offsets_ns(1000.0, 2.0))
    parts = [_all(constant_offsets_ns(1000.0, 2.0, worker=w, workers=3)) for w in range(3)]
    assert sum(len(p) for p in parts) == len(whole)
    assert np.array_equal(np.sort(np.concatenate(parts)), whole)


def test_poisson_interarrivals_pass_goodness_of_fit():
    rate = 5000.0
    t = _all(poisson_offsets_ns(rate, 20.0, seed=42))
    gaps_s = np.diff(t) / 1e9
    # Kolmogorov-Smirnov against the exponential with the nominal mean.
    ks = stats.kstest(gaps_s, "expon", args=(0, 1 / rate))
    assert ks.pvalue > 0.001, ks
    # Counts per 10 ms window: Poisson, so the index of dispersion is ~1 and a chi-square
    # test of the dispersion passes.
    counts = np.bincount((t // 10_000_000).astype(np.int64))
    k = len(counts)
    dispersion = counts.var(ddof=1) / counts.mean()
    chi2 = (k - 1) * dispersion
    p = 2 * min(stats.chi2.cdf(chi2, k - 1), stats.chi2.sf(chi2, k - 1))
    assert p > 0.001, (dispersion, p)
    # Its count is Poisson(rate * duration): within 5 sigma.
    assert abs(len(t) - rate * 20.0) < 5 * np.sqrt(rate * 20.0)


def test_poisson_is_seeded_sorted_and_bounded():
    a = _all(poisson_offsets_ns(2000.0, 3.0, seed=7))
    b = _all(poisson_offsets_ns(2000.0, 3.0, seed=7))
    c = _all(poisson_offsets_ns(2000.0, 3.0, seed=8))
    assert np.array_equal(a, b) and not np.array_equal(a[:100], c[:100])
    assert np.all(np.diff(a) >= 0) and a[0] >= 0 and a[-1] < 3e9


def test_poisson_worker_shares_are_independent_streams_at_rate_over_n():
    parts = [_all(poisson_offsets_ns(6000.0, 10.0, seed=1, worker=w, workers=2)) for w in (0, 1)]
    for p in parts:
        assert abs(len(p) - 30_000) < 5 * np.sqrt(30_000)
    assert not np.array_equal(parts[0][:50], parts[1][:50])
    merged = np.sort(np.concatenate(parts))
    ks = stats.kstest(np.diff(merged) / 1e9, "expon", args=(0, 1 / 6000.0))
    assert ks.pvalue > 0.001


def test_unknown_arrival_is_a_config_error():
    with pytest.raises(ConfigError, match="constant, poisson, trace, fitted"):
        arrival_for("bursty")
    with pytest.raises(ConfigError, match="needs --trace"):
        arrival_for("fitted")


def test_every_arrival_kind_is_one_class_in_the_registry():
    # A new process is one class: the spec's check, the workload and the search all go
    # through ARRIVALS, so nothing else needs to know its name.
    assert all(issubclass(c, Arrival) and ARRIVALS[c.name] is c for c in ARRIVALS.values())
    offs, records = next(arrival_for("constant").chunks(100.0, 1.0, None))
    assert records is None and len(offs) == 100
