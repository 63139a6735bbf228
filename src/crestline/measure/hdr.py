"""Histograms per interval and per run: HdrHistogram's layout held as a numpy count array.

The compiled recorders (crestline._hdr) fill the same layout; this module merges them
(counts add, exactly), reads percentiles with HdrHistogram's own rules, and converts to and
from `hdrh.histogram.HdrHistogram` for the standard V2 encoding and interval logs. Pure
Python and numpy: it never imports the compiled core.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_NS = 1
HIGHEST_NS = 3_600 * 1_000_000_000  # one hour
SIGNIFICANT_DIGITS = 3

_TEMPLATE = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
COUNTS_LEN: int = _TEMPLATE.counts_len
LAYOUT = dict(
    counts_len=_TEMPLATE.counts_len,
    highest_ns=HIGHEST_NS,
    unit_magnitude=_TEMPLATE.unit_magnitude,
    sub_half_mag=_TEMPLATE.sub_bucket_half_count_magnitude,
    sub_mask=_TEMPLATE.sub_bucket_mask,
    sub_half_count=_TEMPLATE.sub_bucket_half_count,
)


def _layout_tables():
    idx = np.arange(COUNTS_LEN, dtype=np.int64)
    half_mag = _TEMPLATE.sub_bucket_half_count_magnitude
    half = _TEMPLATE.sub_bucket_half_count
    bucket = (idx >> half_mag) - 1
    sub = (idx & (half - 1)) + half
    first = bucket < 0
    sub[first] -= half
    bucket[first] = 0
    unit = _TEMPLATE.unit_magnitude
    lowest = sub << (bucket + unit)
    # Width of the equivalent range; sub >= sub_bucket_count never happens for indexed values.
    width = np.int64(1) << (bucket + unit)
    return lowest, lowest + width - 1, lowest + (width >> 1)


LOWEST_EQUIV, HIGHEST_EQUIV, MEDIAN_EQUIV = _layout_tables()
_NO_MIN = np.iinfo(np.int64).max


@dataclass
class Hist:
    """Counts in HdrHistogram's layout plus exact total, min, max and the clamped count (ns)."""

    counts: np.ndarray
    total: int = 0
    min_ns: int = _NO_MIN
    max_ns: int = 0
    clamped: int = 0

    @classmethod
    def empty(cls) -> Hist:
        return cls(np.zeros(COUNTS_LEN, dtype=np.uint64))

    @classmethod
    def from_take(cls, taken) -> Hist:
        """From HdrRecorder.take(): ((indices, counts), total, min_ns, max_ns, clamped)."""
        (idx, vals), total, min_ns, max_ns, clamped = taken
        counts = np.zeros(COUNTS_LEN, dtype=np.uint64)
        counts[idx] = vals
        return cls(counts, int(total), int(min_ns), int(max_ns), int(clamped))

    @classmethod
    def from_values(cls, values_ns) -> Hist:
        """A histogram of raw ns values, clamped like the recorder (tests and slow paths)."""
        v = np.asarray(values_ns, dtype=np.int64)
        clamped = int(np.count_nonzero((v < 0) | (v > HIGHEST_NS)))
        v = np.clip(v, 0, HIGHEST_NS)
        h = cls.empty()
        if v.size:
            np.add.at(h.counts, index_of(v), 1)
            h.total, h.min_ns, h.max_ns = int(v.size), int(v.min()), int(v.max())
        h.clamped = clamped
        return h

    def add(self, other: Hist) -> Hist:
        """Add other's counts into this one (exact), returning self."""
        self.counts += other.counts
        self.total += other.total
        self.min_ns = min(self.min_ns, other.min_ns)
        self.max_ns = max(self.max_ns, other.max_ns)
        self.clamped += other.clamped
        return self

    def copy(self) -> Hist:
        return Hist(self.counts.copy(), self.total, self.min_ns, self.max_ns, self.clamped)

    # -- reading --------------------------------------------------------------------------
    def values_at(self, percentiles) -> list[int]:
        """Values (ns) at each percentile (0..100), by HdrHistogram's get_value_at_percentile."""
        if self.total == 0:
            return [0 for _ in percentiles]
        cum = np.cumsum(self.counts)
        out = []
        for p in percentiles:
            target = max(int(min(p, 100.0) * self.total / 100 + 0.5), 1)
            i = int(np.searchsorted(cum, target))
            out.append(int(HIGHEST_EQUIV[i] if p else LOWEST_EQUIV[i]))
        return out

    def capped_values_at(self, percentiles) -> list[int]:
        """values_at, each capped at the exact recorded maximum: a percentile is its bucket's
        highest equivalent value (HdrHistogram's rule), which can lie up to 0.1% above it."""
        top = self.max_ns if self.total else 0
        return [min(v, top) for v in self.values_at(percentiles)]

    def mean_ns(self) -> float:
        """Mean (ns) by HdrHistogram's rule: each count at the middle of its bucket."""
        if self.total == 0:
            return 0.0
        nz = np.flatnonzero(self.counts)
        return float(np.dot(self.counts[nz].astype(np.float64), MEDIAN_EQUIV[nz])) / self.total

    def summary_ms(self) -> dict:
        """{p50, p90, p99, p999, max, mean} in milliseconds; max is the exact recorded maximum
        and the percentiles are capped at it (capped_values_at)."""
        p50, p90, p99, p999 = self.capped_values_at((50.0, 90.0, 99.0, 99.9))
        return {
            "p50": p50 / 1e6,
            "p90": p90 / 1e6,
            "p99": p99 / 1e6,
            "p999": p999 / 1e6,
            "max": (self.max_ns if self.total else 0) / 1e6,
            "mean": self.mean_ns() / 1e6,
        }

    def distribution_ms(self) -> list[list[float]]:
        """[[percentile, ms], ...] at DISTRIBUTION_POINTS: the percentile spectrum a report
        plots (log scale on the tail), capped at the exact maximum; [] when empty."""
        if self.total == 0:
            return []
        values = self.capped_values_at(DISTRIBUTION_POINTS)
        return [[p, v / 1e6] for p, v in zip(DISTRIBUTION_POINTS, values, strict=True)]

    # -- interchange ----------------------------------------------------------------------
    def to_hdrh(self) -> HdrHistogram:
        h = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
        np.frombuffer(h.counts, dtype=np.uint64)[:] = self.counts
        h.total_count = self.total
        h.min_value = self.min_ns if self.total else sys.maxsize
        h.max_value = self.max_ns
        return h

    @classmethod
    def from_hdrh(cls, h: HdrHistogram) -> Hist:
        if h.counts_len != COUNTS_LEN or h.unit_magnitude != _TEMPLATE.unit_magnitude:
            other = h
            h = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
            h.add(other)
        counts = np.frombuffer(h.counts, dtype=np.uint64).copy()
        total = int(h.total_count)
        return cls(
            counts,
            total,
            int(h.get_min_value()) if total else _NO_MIN,
            int(h.get_max_value()) if total else 0,
        )

    def encode(self) -> str:
        """HdrHistogram V2 compressed, base64 ('HISTF...'), readable by every HDR library."""
        return self.to_hdrh().encode().decode("ascii")

    @classmethod
    def decode(cls, blob) -> Hist:
        if isinstance(blob, str):
            blob = blob.encode("ascii")
        return cls.from_hdrh(HdrHistogram.decode(blob))

    # Pickled sparse: an interval touches a few hundred of the ~34k buckets.
    def __getstate__(self):
        nz = np.flatnonzero(self.counts).astype(np.int32)
        return (nz, self.counts[nz], self.total, self.min_ns, self.max_ns, self.clamped)

    def __setstate__(self, state):
        nz, vals, self.total, self.min_ns, self.max_ns, self.clamped = state
        self.counts = np.zeros(COUNTS_LEN, dtype=np.uint64)
        self.counts[nz] = vals


# Percentiles of the spectrum in results: dense where tails live (each "nine" gets points).
DISTRIBUTION_POINTS = (0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.75, 99.9,
                       99.95, 99.99, 99.995, 99.999, 100.0)


def index_of(values_ns: np.ndarray) -> np.ndarray:
    """Count-array index of each value (vectorised HdrHistogram index function)."""
    v = np.asarray(values_ns, dtype=np.int64)
    masked = v | _TEMPLATE.sub_bucket_mask
    bitlen = np.zeros_like(v)
    nz = masked > 0
    # frexp is exact for integers below 2**53 (about 104 days in ns).
    bitlen[nz] = np.frexp(masked[nz].astype(np.float64))[1]
    unit = _TEMPLATE.unit_magnitude
    half_mag = _TEMPLATE.sub_bucket_half_count_magnitude
    bucket = bitlen - unit - (half_mag + 1)
    sub = v >> (bucket + unit)
    return ((bucket + 1) << half_mag) + (sub - _TEMPLATE.sub_bucket_half_count)
