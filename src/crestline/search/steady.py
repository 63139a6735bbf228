"""Steady-state statistics of a step's intervals: trends, autocorrelation, relaxation.

Pure numpy. A step's intervals are not independent samples: near capacity a queue that builds
up takes a while to drain, so one slow second makes the next one slow too. Everything here
treats the interval, not the request, as the unit, and widens the uncertainty by how long the
series remembers (docs/search.md, "Steady state").
"""

from __future__ import annotations

import math

import numpy as np

# One-sided 5%: the z of the trend test and of the confidence bounds on a tail fraction.
Z_ONE_SIDED = 1.645
# The lag-1 autocorrelation is clipped here: with a dozen intervals a larger value is mostly
# noise, and tau = (1 + r) / (1 - r) = 9 already asks for very long steps.
_R1_MAX = 0.8


def theil_sen(y) -> float:
    """Median of pairwise slopes (units of y per interval); robust to one wild interval."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n < 2:
        return 0.0
    i, j = np.triu_indices(n, 1)
    return float(np.median((y[j] - y[i]) / (j - i)))


def mann_kendall_z(y) -> float:
    """Mann-Kendall trend statistic as a z score (> 0: rising). 0 with fewer than 4 values.

    Rank-based, so it needs no model of the latency distribution; ties count as no change.
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n < 4:
        return 0.0
    i, j = np.triu_indices(n, 1)
    s = float(np.sign(y[j] - y[i]).sum())
    var = n * (n - 1) * (2 * n + 5) / 18.0
    if s == 0 or var <= 0:
        return 0.0
    return (s - math.copysign(1.0, s)) / math.sqrt(var)


def drifting_up(y, min_rise: float) -> bool:
    """A significant upward trend (Mann-Kendall, one-sided 1%) whose Theil-Sen rise over the
    series is larger than min_rise (in y's units): both, so that a tiny but steady creep in a
    long step, or one noisy jump in a short one, does not count."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 5:
        return False
    return mann_kendall_z(y) >= 2.33 and theil_sen(y) * (len(y) - 1) > min_rise


def autocorr_time(y) -> float:
    """Integrated autocorrelation time of a per-interval series, in intervals (>= 1).

    From the lag-1 autocorrelation r as (1 + r) / (1 - r), the AR(1) value; r counts only when
    it exceeds its own noise (2 / sqrt(n)), and is clipped at 0.8. 1 with fewer than 5 values.
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n < 5:
        return 1.0
    d = y - y.mean()
    den = float((d * d).sum())
    if den <= 0:
        return 1.0
    r = float((d[1:] * d[:-1]).sum()) / den
    if r <= 2.0 / math.sqrt(n):
        return 1.0
    r = min(r, _R1_MAX)
    return (1 + r) / (1 - r)


def tail_fraction(xs, ns, tail: float, tau: float) -> tuple[float, float]:
    """(p, se): the pooled fraction of samples above a bound, and its standard error.

    xs, ns: per-interval exceedances and samples; tail: the allowed fraction (0.01 for p99);
    tau: the series' autocorrelation time. The error is that of a ratio estimator over
    intervals (the spread of x_i - p n_i, so bursts count as bursts), inflated by tau for
    intervals that remember each other; never below the binomial error at max(p, tail / 2), so
    that a short calm step is not taken for proof.
    """
    xs, ns = np.asarray(xs, float), np.asarray(ns, float)
    n = float(ns.sum())
    if n <= 0:
        return 0.0, float("inf")
    p = float(xs.sum()) / n
    k = len(xs)
    floor_p = max(p, tail / 2)
    var = floor_p * (1 - floor_p) / n
    if k >= 3:
        cluster = float(((xs - p * ns) ** 2).sum()) / (n * n) * k / (k - 1)
        var = max(var, cluster * tau)
    return p, math.sqrt(var)


def relaxation_s(mean_latency_s: float, utilisation: float | None) -> float:
    """How long the queue takes to forget a disturbance (s), from queueing theory.

    For a single-server queue the relaxation time is about E[S] / (1 - sqrt(rho))^2 and the
    mean sojourn W = E[S] / (1 - rho), so t = W (1 - rho) / (1 - sqrt(rho))^2, about
    4 W / (1 - rho) near saturation. With many servers or other service laws the constant
    differs, the 1 / (1 - rho) growth does not. utilisation: rate / saturation throughput, or
    None when no step has saturated the server yet (then 0: the data must speak).
    """
    if utilisation is None or not mean_latency_s > 0:
        return 0.0
    rho = min(max(utilisation, 0.0), 0.98)
    if rho <= 0:
        return mean_latency_s
    return mean_latency_s * (1 - rho) / (1 - math.sqrt(rho)) ** 2
