"""Clock offsets between the driver and its actors, from round trips.

CLOCK_MONOTONIC is per host: a start time or an interval boundary chosen on the driver means
nothing on another machine until it is translated by that machine's offset. Pure: samples in,
estimates out.

One sample is a round trip timed on the driver: t0 (the request left), the actor's reading of
its own clock, t1 (the answer came back). The actor read its clock somewhere in [t0, t1] of the
driver's time, so offset = reading - (t0 + t1) / 2 lies within +-(t1 - t0) / 2 of the truth: a
bound, not an estimate of spread. Of several round trips the one with the smallest RTT gives
the tightest bound (NTP's rule); queueing in the RPC path only ever widens a sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CLOCK_SAMPLES = 8  # round trips per actor before every stage
# Two actors' interval grids may disagree by this much at most (docs/distributed.md): 2 ms, or
# 1% of the interval when that is longer. Past it the same interval index no longer covers the
# same span on every actor, and the step is invalid.
MIN_CLOCK_BOUND_NS = 2_000_000
CLOCK_BOUND_SHARE = 0.01


def clock_bound_ns(interval_s: float) -> int:
    return max(MIN_CLOCK_BOUND_NS, int(CLOCK_BOUND_SHARE * interval_s * 1e9))


@dataclass(frozen=True)
class ClockOffset:
    """actor clock - driver clock (ns), within +- uncertainty_ns (half the smallest RTT)."""

    offset_ns: int
    uncertainty_ns: int
    rtt_ns: int

    def to_actor_ns(self, driver_ns: int) -> int:
        """A driver CLOCK_MONOTONIC time in the actor's own clock."""
        return driver_ns + self.offset_ns

    def to_driver_ns(self, actor_ns: int) -> int:
        return actor_ns - self.offset_ns

    def to_dict(self) -> dict:
        return {"offset_ms": self.offset_ns / 1e6, "uncertainty_ms": self.uncertainty_ns / 1e6,
                "rtt_ms": self.rtt_ns / 1e6}


def estimate_offset(samples: Sequence[tuple[int, int, int]]) -> ClockOffset:
    """The offset from (t0_ns, actor_ns, t1_ns) round trips: the smallest RTT's. Raises
    ValueError without samples or with one whose answer came back before it was sent."""
    if not samples:
        raise ValueError("no clock samples")
    t0, reading, t1 = min(samples, key=lambda s: s[2] - s[0])
    if t1 < t0:
        raise ValueError(f"a round trip ended before it began: {t0} > {t1}")
    return ClockOffset(reading - (t0 + t1) // 2, (t1 - t0 + 1) // 2, t1 - t0)


def disagreement_ns(offsets: Sequence[ClockOffset]) -> int:
    """The most two actors' translated times can disagree by: each is within its uncertainty of
    the driver's time, so two are within the sum of theirs (one actor: its own)."""
    u = sorted((o.uncertainty_ns for o in offsets), reverse=True)
    return sum(u[:2])


def clock_faults(offsets: Sequence[ClockOffset], names: Sequence[str],
                 bound_ns: int) -> list[str]:
    """One line if the actors' clocks may disagree past bound_ns, naming the worst two."""
    worst = disagreement_ns(offsets)
    if worst <= bound_ns:
        return []
    order = sorted(range(len(offsets)), key=lambda i: -offsets[i].uncertainty_ns)[:2]
    who = " and ".join(f"{names[i]} (round trip {offsets[i].rtt_ns / 1e6:.3g} ms)"
                       for i in order)
    return [f"clocks: {who} may disagree by up to {worst / 1e6:.3g} ms, over the "
            f"{bound_ns / 1e6:.3g} ms bound: their intervals would not line up"]
