"""Arrival processes: intended send times as int64 ns offsets from a stage's start.

Pure and clock-free. A process yields numpy chunks so the compiled scheduler reads a flat array
and a stage of any length needs bounded memory. Worker k of n gets its share of the same
schedule: every n-th slot of a constant process, or an independent Poisson stream at rate/n
(superposed, n Poisson streams are one Poisson stream at the full rate).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from crestline.errors import ConfigError

ARRIVALS = ("constant", "poisson")
CHUNK = 16_384


def constant_offsets_ns(rate_rps: float, duration_s: float, worker: int = 0, workers: int = 1,
                        chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Slot i at round(i * 1e9 / rate): computed from the index, never by summing gaps."""
    period_ns = 1e9 / rate_rps
    n_total = int(np.ceil(duration_s * rate_rps - 1e-9))
    start = worker
    while start < n_total:
        idx = np.arange(start, min(start + chunk * workers, n_total), workers, dtype=np.float64)
        yield np.round(idx * period_ns).astype(np.int64)
        start += chunk * workers


def poisson_offsets_ns(rate_rps: float, duration_s: float, seed: int | None, worker: int = 0,
                       workers: int = 1, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Exponential gaps at rate/workers, seeded per worker; stops at the duration."""
    seq = np.random.SeedSequence(seed)
    rng = np.random.default_rng(seq.spawn(workers)[worker] if workers > 1 else seq)
    mean_gap_ns = 1e9 * workers / rate_rps
    end_ns = duration_s * 1e9
    t = 0.0
    while t < end_ns:
        gaps = rng.exponential(mean_gap_ns, size=chunk)
        times = t + np.cumsum(gaps)
        t = float(times[-1])
        times = times[times < end_ns]
        if times.size:
            yield times.astype(np.int64)


def offsets_ns(arrival: str, rate_rps: float, duration_s: float, seed: int | None = None,
               worker: int = 0, workers: int = 1) -> Iterator[np.ndarray]:
    """The schedule of one worker for one stage, as int64 ns offsets in chunks."""
    if arrival == "constant":
        return constant_offsets_ns(rate_rps, duration_s, worker, workers)
    if arrival == "poisson":
        return poisson_offsets_ns(rate_rps, duration_s, seed, worker, workers)
    raise ConfigError(f"unknown arrival process {arrival!r}: use one of {', '.join(ARRIVALS)}")


def chunk_source(chunks):
    """Adapt an iterator of offset arrays, or of (offsets, payload indices) pairs, to the
    core's callable: () -> (int64 offsets, int32 indices or None) | None."""
    it = iter(chunks)

    def next_chunk():
        item = next(it, None)
        if item is None:
            return None
        offs, pidx = item if isinstance(item, tuple) else (item, None)
        return (np.ascontiguousarray(offs, dtype=np.int64),
                None if pidx is None else np.ascontiguousarray(pidx, dtype=np.int32))

    return next_chunk
