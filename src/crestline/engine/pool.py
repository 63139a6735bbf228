"""The pool protocol: what runs a stage of load, whatever it is made of.

A pool offers one stage at a time (a rate for a duration, on its arrival process) and hands
back one interval snapshot per interval, merged exactly across whatever engines it holds; it
can wait until nothing is in flight and be closed. `crestline run` offers one stage, the search
one per step, on the same warm connections. Implementations: `LocalPool` (one engine on this
event loop) and `crestline.engine.workers.WorkerPool` (engine processes on this host); a pool
of remote actors implements the same four calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from crestline.engine.arrivals import Arrival
from crestline.engine.spec import RunSpec
from crestline.engine.workload import Workload
from crestline.measure.result import IntervalSnapshot

# on_snapshot returns True to end the stage after that interval (the search changes rate so).
OnSnapshot = Callable[[IntervalSnapshot], bool | None]


@dataclass(frozen=True)
class Stage:
    """One stage of load. rate_rps is the whole pool's rate; for a trace replayed at its own
    speed the arrival process ignores it."""

    rate_rps: float
    duration_s: float
    seed: int | None = None
    loop: bool = False  # a trace replay repeats for as long as the stage lasts
    first_index: int = 0  # interval indices run on across stages
    drain: bool = True  # wait for what is in flight at the end: one more, `drain`, interval
    start_margin_s: float = 0.02  # from now to the stage's first slot


class Pool(Protocol):
    workers: int

    async def run_stage(self, stage: Stage, on_snapshot: OnSnapshot,
                        stop: asyncio.Event | None = None,
                        on_start: Callable[[int], None] | None = None) -> bool:
        """Offer the stage; on_snapshot gets each interval (merged) in order, on_start the
        stage's start (CLOCK_MONOTONIC ns) before its first slot. True if `stop` cut it short.
        """

    async def wait_idle(self, max_s: float) -> float:
        """Offer nothing until nothing is in flight (at most max_s; the rest are abandoned as
        timeouts); what completes meanwhile is discarded. Returns the seconds waited."""

    async def close(self) -> None: ...


class LocalPool:
    """One engine on the running event loop."""

    workers = 1

    def __init__(self, spec: RunSpec, workload: Workload, arrival: Arrival):
        from crestline.engine.stage import Engine

        self.workload, self.arrival = workload, arrival
        self.engine = Engine(spec, payloads=workload.payloads, classes=workload.core_classes(),
                             class_names=workload.class_names, turns=workload.core_turns())

    async def run_stage(self, stage, on_snapshot, stop=None, on_start=None) -> bool:
        from crestline.engine.stage import monotonic_ns

        chunks = self.workload.chunks(self.arrival, stage.rate_rps, stage.duration_s,
                                      stage.seed, loop=stage.loop)
        start_ns = monotonic_ns() + int(stage.start_margin_s * 1e9)
        if on_start is not None:
            on_start(start_ns)
        return await self.engine.run_stage(chunks, start_ns, stage.duration_s, on_snapshot,
                                           stop, first_index=stage.first_index,
                                           drain=stage.drain)

    async def wait_idle(self, max_s: float) -> float:
        return await self.engine.wait_idle(max_s)

    async def close(self) -> None:
        self.engine.close()

