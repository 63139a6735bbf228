"""Timing bounds on a shared machine: exact checks every run, timing checks in one of a few.

Counts, conservation and error classes are exact and must hold on every run. Latency bounds
depend on the host being quiet for a few seconds; on a shared 2-core CI machine another job can
steal 20 ms at any moment. So a timing bound gets a few fresh runs: a real regression misses it
every time, a neighbour's burst misses it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pytest

T = TypeVar("T")


def timed(measure: Callable[[], T], exact: Callable[[T], None], timing: Callable[[T], None],
          attempts: int = 3) -> T:
    """measure() until timing() holds; exact() must hold on every measurement."""
    missed = []
    for _ in range(attempts):
        d = measure()
        exact(d)
        try:
            timing(d)
            return d
        except AssertionError as e:
            missed.append(str(e).splitlines()[0] if str(e) else repr(e))
    pytest.fail(f"timing bounds missed in all {attempts} runs (a busy machine once, a "
                f"regression every time): " + " | ".join(missed))


def host_wake_p99_ms(duration_s: float = 0.5, period_ns: int = 500_000) -> float:
    """The host's own timer lateness: p99 of how late a bare sleep loop wakes, in ms.

    The engine's schedule lag can be no better than this; measured beside a run, it is the
    truth the run's lateness is judged against (a noisy VM's p99 swings from 0.4 to 4+ ms).
    """
    late_ns = []
    t0 = time.monotonic_ns()
    for k in range(1, int(duration_s * 1e9 / period_ns)):
        due = t0 + k * period_ns
        now = time.monotonic_ns()
        if due > now:
            time.sleep((due - now) / 1e9)
        late_ns.append(time.monotonic_ns() - due)
    return float(np.percentile(late_ns, 99)) / 1e6


def beside_host(run: Callable[[], T]) -> Callable[[], tuple[T, float]]:
    """measure() for timed(): run() between two host_wake_p99_ms() probes, with the worse one."""
    def measure():
        before = host_wake_p99_ms()
        out = run()
        return out, max(before, host_wake_p99_ms())
    return measure


def assert_on_schedule(d: dict, host_p99_ms: float) -> None:
    """The engine kept its schedule as well as its host let it: schedule lag p99 within 1 ms
    plus twice the host's own lateness, and no client problem but the host's late wake-ups."""
    bound_ms = 1.0 + 2.0 * host_p99_ms
    lag_ms = d["schedule_lag_ms"]["p99"]
    assert lag_ms <= bound_ms, (f"schedule lag p99 {lag_ms:.3f} ms > {bound_ms:.3f} ms (the "
                                f"host's own wake lateness p99 {host_p99_ms:.3f} ms)")
    others = [p for p in d["client_problems"] if "its host woke it late" not in p]
    assert not others, others
