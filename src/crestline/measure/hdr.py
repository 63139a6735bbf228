"""Histograms per interval and per run: HdrHistogram's layout held as a numpy count array.

The compiled recorders (crestline._hdr) fill the same layout; this module merges them
(counts add, exactly), reads percentiles with HdrHistogram's own rules, and converts to and
from `hdrh.histogram.HdrHistogram` for the standard V2 encoding and interval logs. Pure
Python and numpy: it never imports the compiled core.
"""

from __future__ import annotations

import sys

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
assert COUNTS_LEN < 2**16  # a sparse Hist's bucket indices are uint16
_NO_MIN = np.iinfo(np.int64).max


class Hist:
    """Counts in HdrHistogram's layout plus exact total, min, max and the clamped count (ns).

    An interval's histogram (from the recorder, or unpickled) is held sparse: its few hundred
    nonzero buckets, not all ~34k (270 KB dense). A run keeps every interval, so dense ones
    grew a long run by about 1 MB a second (bench/soak_bench.py). Sums (empty().add(...)) are
    dense and written in place; `counts` of a sparse one is a fresh read-only dense array.
    """

    def __init__(self, counts, total: int = 0, min_ns: int = _NO_MIN, max_ns: int = 0,
                 clamped: int = 0):
        self._dense = counts
        self._idx = self._vals = None
        self.total, self.min_ns, self.max_ns, self.clamped = total, min_ns, max_ns, clamped

    @classmethod
    def sparse(cls, idx, vals, total: int = 0, min_ns: int = _NO_MIN, max_ns: int = 0,
               clamped: int = 0) -> Hist:
        """From nonzero bucket indices (each once) and their counts."""
        h = cls(None, total, min_ns, max_ns, clamped)
        idx, vals = np.asarray(idx), np.asarray(vals)
        if idx.size > 1 and np.any(idx[1:] < idx[:-1]):
            order = np.argsort(idx)
            idx, vals = idx[order], vals[order]
        # 6 bytes a bucket: every index fits 16 bits, an interval's counts 32 (checked)
        h._idx = idx.astype(np.uint16)
        h._vals = vals.astype(np.uint32 if not vals.size or vals.max() < 2**32 else np.uint64)
        return h

    @property
    def counts(self) -> np.ndarray:
        if self._dense is not None:
            return self._dense
        c = np.zeros(COUNTS_LEN, dtype=np.uint64)
        c[self._idx] = self._vals
        c.flags.writeable = False  # a write to a sparse one's copy would be lost: fail instead
        return c

    @counts.setter
    def counts(self, value: np.ndarray) -> None:
        self._dense, self._idx, self._vals = value, None, None

    def nonzero(self) -> tuple[np.ndarray, np.ndarray]:
        """(bucket indices ascending, their counts) of the nonzero buckets."""
        if self._dense is None:
            return self._idx, self._vals
        nz = np.flatnonzero(self._dense)
        return nz, self._dense[nz]

    def __repr__(self) -> str:
        return (f"Hist(total={self.total}, min_ns={self.min_ns}, max_ns={self.max_ns}, "
                f"clamped={self.clamped})")

    @classmethod
    def empty(cls) -> Hist:
        return cls(np.zeros(COUNTS_LEN, dtype=np.uint64))

    @classmethod
    def from_take(cls, taken) -> Hist:
        """From HdrRecorder.take(): ((indices, counts), total, min_ns, max_ns, clamped)."""
        (idx, vals), total, min_ns, max_ns, clamped = taken
        return cls.sparse(idx, vals, int(total), int(min_ns), int(max_ns), int(clamped))

    @classmethod
    def from_values(cls, values_ns) -> Hist:
        """A histogram of raw ns values, clamped like the recorder (tests and slow paths)."""
        v = np.asarray(values_ns, dtype=np.int64)
        clamped = int(np.count_nonzero((v < 0) | (v > HIGHEST_NS)))
        v = np.clip(v, 0, HIGHEST_NS)
        if not v.size:
            return cls.sparse([], [], clamped=clamped)
        # Sparse: the simulator cuts one per interval, and adding a sparse one into a pool
        # touches only its buckets, where a dense one is scanned end to end.
        idx, vals = np.unique(index_of(v), return_counts=True)
        return cls.sparse(idx, vals, int(v.size), int(v.min()), int(v.max()), clamped)

    def add(self, other: Hist) -> Hist:
        """Add other's counts into this one (exact), returning self (dense from now on)."""
        if self._dense is None:
            self.counts = self.counts.copy()
        idx, vals = other.nonzero()
        self._dense[idx] += vals.astype(np.uint64)
        self.total += other.total
        self.min_ns = min(self.min_ns, other.min_ns)
        self.max_ns = max(self.max_ns, other.max_ns)
        self.clamped += other.clamped
        return self

    def copy(self) -> Hist:
        if self._dense is None:
            return Hist.sparse(self._idx.copy(), self._vals.copy(), self.total, self.min_ns,
                               self.max_ns, self.clamped)
        return Hist(self._dense.copy(), self.total, self.min_ns, self.max_ns, self.clamped)

    # -- reading --------------------------------------------------------------------------
    def values_at(self, percentiles) -> list[int]:
        """Values (ns) at each percentile (0..100), by HdrHistogram's get_value_at_percentile."""
        if self.total == 0:
            return [0 for _ in percentiles]
        # Over the nonzero buckets only: the first bucket whose running count reaches the
        # target is the same one the dense running count finds.
        idx, vals = self.nonzero()
        cum = np.cumsum(vals)
        out = []
        for p in percentiles:
            target = max(int(min(p, 100.0) * self.total / 100 + 0.5), 1)
            i = int(idx[min(int(np.searchsorted(cum, target)), len(idx) - 1)])
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
        nz, vals = self.nonzero()
        return float(np.dot(vals.astype(np.float64), MEDIAN_EQUIV[nz])) / self.total

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
        """An hdrh histogram of these counts. It and its encoder refer to each other: callers
        that drop it should _release() it, or only the cyclic collector frees its ~270 KB."""
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
        h = self.to_hdrh()
        try:
            return h.encode().decode("ascii")
        finally:
            _release(h)

    @classmethod
    def decode(cls, blob) -> Hist:
        if isinstance(blob, str):
            blob = blob.encode("ascii")
        h = HdrHistogram.decode(blob)
        try:
            return cls.from_hdrh(h)
        finally:
            _release(h)

    # Pickled sparse (an interval touches a few hundred of the ~34k buckets), and kept so.
    def __getstate__(self):
        nz, vals = self.nonzero()
        return (nz.astype(np.int32), vals, self.total, self.min_ns, self.max_ns, self.clamped)

    def __setstate__(self, state):
        nz, vals, total, min_ns, max_ns, clamped = state
        h = Hist.sparse(nz, vals, total, min_ns, max_ns, clamped)
        self.__dict__.update(h.__dict__)


# Percentiles of the spectrum in results: dense where tails live (each "nine" gets points).
DISTRIBUTION_POINTS = (0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.75, 99.9,
                       99.95, 99.99, 99.995, 99.999, 100.0)


def _release(h: HdrHistogram) -> None:
    """Break hdrh's histogram <-> encoder cycle, so reference counting frees the counts (270 KB
    of ctypes array) at once. Left to the cyclic collector, the runlog's four encodings an
    interval piled up ~1 MB a second at 20k rps between collections: a 13 MB RSS sawtooth in
    the soak."""
    h.encoder.histogram = None


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
