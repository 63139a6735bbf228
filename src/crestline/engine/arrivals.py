"""Arrival processes: intended send times as int64 ns offsets from a stage's start.

Pure and clock-free. Each process is one class behind `Arrival`: a stage's schedule comes out
in numpy chunks, so the compiled scheduler reads a flat array and a stage of any length needs
bounded memory. A chunk is (offsets ns, recorded-request indices or None): processes that
replay recorded traffic say which recorded request each slot carries; the others leave the
choice of request to the workload.

Worker k of n gets its share of the same schedule: every n-th slot of a constant process or a
trace, or an independent stream at rate/n for the random processes (superposed, n Poisson
streams are one Poisson stream at the full rate).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from crestline.errors import ConfigError

CHUNK = 16_384
FIT_BLOCK = 64  # consecutive gaps kept together: bursts shorter than this survive intact

Chunk = tuple[np.ndarray, np.ndarray | None]


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


def pass_duration_s(offsets_ns: np.ndarray, speed: float = 1.0) -> float:
    """How long one pass over recorded offsets lasts at `speed`: the span plus one mean gap, so
    that a looped trace keeps its rate."""
    if len(offsets_ns) == 0:
        return 0.0
    span_ns = int(offsets_ns[-1] - offsets_ns[0])
    return (span_ns + span_ns / max(len(offsets_ns) - 1, 1)) / 1e9 / speed


class Arrival:
    """One arrival process. `chunks` yields one worker's share of one stage's schedule."""

    name: ClassVar[str]
    replays_trace: ClassVar[bool] = False  # needs recorded offsets (--trace)

    def chunks(self, rate_rps: float, duration_s: float, seed: int | None, worker: int = 0,
               workers: int = 1, loop: bool = False) -> Iterator[Chunk]:
        raise NotImplementedError


class Constant(Arrival):
    """Evenly spaced slots (wrk2's schedule)."""

    name = "constant"

    def chunks(self, rate_rps, duration_s, seed, worker=0, workers=1, loop=False):
        for offs in constant_offsets_ns(rate_rps, duration_s, worker, workers):
            yield offs, None


class Poisson(Arrival):
    """Exponential gaps, seeded: independent users arriving at random."""

    name = "poisson"

    def chunks(self, rate_rps, duration_s, seed, worker=0, workers=1, loop=False):
        for offs in poisson_offsets_ns(rate_rps, duration_s, seed, worker, workers):
            yield offs, None


class _Recorded(Arrival):
    replays_trace = True

    def __init__(self, record_offsets_ns: np.ndarray):
        self.base_ns = np.asarray(record_offsets_ns, dtype=np.int64) - int(record_offsets_ns[0])

    @property
    def trace_rate_rps(self) -> float:
        d = pass_duration_s(self.base_ns)
        return len(self.base_ns) / d if d else 0.0


class TraceTiming(_Recorded):
    """The recorded timestamps, each slot with the request recorded at it, divided by `speed`.

    speed None: the stage's rate decides it (rate / the trace's own rate), as in a search,
    where a rate is a replay speed. Looped for as long as the stage lasts when `loop`.
    """

    name = "trace"

    def __init__(self, record_offsets_ns: np.ndarray, speed: float | None = 1.0):
        super().__init__(record_offsets_ns)
        self.speed = speed
        if speed is None and not self.trace_rate_rps > 0:
            # Found when the session opens, before any load (a search would fail mid-run).
            raise ConfigError("--arrival trace needs a trace that spans some time: its "
                              "requests all share one timestamp; use --arrival poisson")

    def chunks(self, rate_rps, duration_s, seed, worker=0, workers=1, loop=False):
        base = self.base_ns
        speed = self.speed if self.speed is not None else rate_rps / self.trace_rate_rps
        period_ns = pass_duration_s(base, speed) * 1e9
        mine = np.arange(worker, len(base), workers)
        end_ns = duration_s * 1e9
        k = 0
        while True:
            start = k * period_ns
            if start >= end_ns:
                return
            for i in range(0, len(mine), CHUNK):
                idx = mine[i:i + CHUNK]
                offs = (start + base[idx] / speed).astype(np.int64)
                keep = offs < end_ns
                if keep.any():
                    yield offs[keep], idx[keep]
                if not keep.all():
                    return
            if not loop:
                return
            k += 1


class Fitted(_Recorded):
    """The trace's own inter-arrival process at any rate, by a block bootstrap: runs of
    FIT_BLOCK consecutive recorded gaps (with the requests that followed them), drawn at random
    and scaled by trace rate / target rate. The gap distribution and its short-range
    correlation (bursts) survive the scaling, where a Poisson process would flatten them."""

    name = "fitted"

    def __init__(self, record_offsets_ns: np.ndarray):
        super().__init__(record_offsets_ns)
        if len(self.base_ns) < 3:
            raise ConfigError("--arrival fitted needs a trace of at least 3 requests")
        self.gaps_ns = np.diff(self.base_ns).astype(np.float64)

    def chunks(self, rate_rps, duration_s, seed, worker=0, workers=1, loop=False):
        gaps = self.gaps_ns
        scale = self.trace_rate_rps / (rate_rps / workers)
        block = min(FIT_BLOCK, len(gaps))
        rng = np.random.default_rng(np.random.SeedSequence(
            [seed if seed is not None else 0, worker, 11]))
        t, end_ns = 0.0, duration_s * 1e9
        while t < end_ns:
            starts = rng.integers(0, len(gaps) - block + 1, size=max(1, CHUNK // block))
            idx = (starts[:, None] + np.arange(block)[None, :]).ravel()
            times = t + np.cumsum(gaps[idx] * scale)
            t = float(times[-1])
            keep = times < end_ns
            if keep.any():
                # each slot carries the request recorded right after its gap
                yield times[keep].astype(np.int64), idx[keep] + 1


ARRIVALS: dict[str, type[Arrival]] = {c.name: c for c in (Constant, Poisson, TraceTiming, Fitted)}


def arrival_for(name: str, record_offsets_ns: np.ndarray | None = None,
                speed: float | None = 1.0) -> Arrival:
    """The process `--arrival NAME` names. Raises ConfigError for an unknown name, or for a
    trace-replaying process without recorded offsets."""
    cls = ARRIVALS.get(name)
    if cls is None:
        raise ConfigError(f"unknown --arrival {name!r}: use one of {', '.join(ARRIVALS)}")
    if not cls.replays_trace:
        return cls()
    if record_offsets_ns is None or len(record_offsets_ns) == 0:
        raise ConfigError(f"--arrival {name} needs --trace FILE.cltrace")
    return TraceTiming(record_offsets_ns, speed) if cls is TraceTiming else cls(record_offsets_ns)


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
