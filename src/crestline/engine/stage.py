"""One engine: a compiled Core on the running event loop, driven stage by stage.

Per interval (Python): wake near the boundary, let the core send what is due, take its
counters and histograms. Per request: nothing here; that is all in crestline._core.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator

import numpy as np

from crestline import _core
from crestline.engine.arrivals import chunk_source
from crestline.engine.spec import RunSpec
from crestline.measure.hdr import LAYOUT
from crestline.measure.heap import fix_mmap_threshold
from crestline.measure.result import IntervalSnapshot
from crestline.transport.connect import plan_for

monotonic_ns = _core.monotonic_ns


async def sleep_until_ns(t_ns: int, stop: asyncio.Event | None = None,
                         end: asyncio.Event | None = None) -> asyncio.Event | None:
    """Sleep until the monotonic time t_ns; returns `stop` or `end` if one was set first."""
    events = [e for e in (stop, end) if e is not None]
    for e in events:
        if e.is_set():
            return e
    delay_s = (t_ns - monotonic_ns()) / 1e9
    if delay_s > 0:
        if not events:
            await asyncio.sleep(delay_s)
        else:
            waits = [asyncio.ensure_future(e.wait()) for e in events]
            await asyncio.wait(waits, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            for e in events:
                if e.is_set():
                    return e
    # The loop's timers are millisecond-grained and may fire early: finish the wait turn by
    # turn, so an interval boundary is never cut before its time (a slot due just before the
    # end of a stage would otherwise be left unsent).
    while monotonic_ns() < t_ns:
        await asyncio.sleep(0)
    return None


class Engine:
    """Owns one Core (its connection pool stays warm across stages)."""

    def __init__(self, spec: RunSpec, worker: int = 0, payloads: list[bytes] | None = None,
                 classes=None, class_names=None, turns=None):
        fix_mmap_threshold()  # an hour-long run would otherwise grow its heap (measure.heap)
        target = spec.target
        connections, max_inflight = spec.share(worker)
        self.spec = spec
        plan = plan_for(target.scheme, target.host, spec.tls, http2=spec.http2,
                        streams=spec.streams, grpc=spec.grpc_target())
        self.core = _core.Core(
            asyncio.get_running_loop(), target.host, target.port,
            [plan.render(p) for p in payloads or [spec.request_bytes()]], LAYOUT,
            connections=connections * plan.streams, max_inflight=max_inflight,
            timeout_s=spec.timeout_s, precise=spec.precise,
            batch_window_us=spec.batch_window_s * 1e6, classes=classes,
            transport=plan.factory,
            stream_slo=spec.good_stream_ns, turns=turns)
        self.class_names = class_names
        self._cpu_mark_s = time.process_time()
        self._preopen = spec.preopen_share(worker) * plan.streams

    async def preopen(self, max_s: float = 6.0) -> int:
        """Open the spec's pre-opened connections (RunSpec.preopen) and wait until they are
        up or have failed (at most max_s: a connect's own timeout is 5 s). Called before the
        first stage's start time is chosen, so no handshake lands in its schedule; a failed
        one is simply not there, and the requests that would have used it open their own
        (and fail as they would have). Returns the connections open."""
        if self._preopen and self.core.preopen(self._preopen):
            deadline_ns = monotonic_ns() + int(max_s * 1e9)
            while self.core.connecting and monotonic_ns() < deadline_ns:
                await asyncio.sleep(0.002)
        return self.core.open_connections

    async def run_stage(self, chunks: Iterator[np.ndarray], start_ns: int, duration_s: float,
                        on_snapshot: Callable[[IntervalSnapshot], bool | None],
                        stop: asyncio.Event | None = None, first_index: int = 0,
                        drain: bool = True, end: asyncio.Event | None = None) -> bool:
        """Offer one stage's schedule from start_ns; emit a snapshot per interval.

        Interval boundaries sit on the grid start_ns + k * interval_s, so workers that share
        start_ns cut the same intervals. on_snapshot returning True ends the stage after that
        interval (the search changes rate that way, on warm connections). Setting `end` does
        the same from outside, at once and without a partial interval: what was sent since the
        last boundary counts in the next take (a worker pool's parent ends its workers' stage
        so, one control message after the boundary it decided on). Returns True if `stop` cut
        the stage short.
        """
        interval_ns = int(self.spec.interval_s * 1e9)
        end_ns = start_ns + int(duration_s * 1e9)
        # Move everything alive now out of the collector's reach: a full collection over the
        # interpreter's objects pauses the loop for ~10 ms, which would show up as send lag.
        # No gc.collect() first: start_ns is already set, and in a big process (an embedding
        # harness, a long test session) that collection took 50-60 ms, so every stage began
        # that late. What garbage the freeze keeps is freed after the stage.
        gc.freeze()
        try:
            return await self._run_stage(chunks, start_ns, end_ns, interval_ns, on_snapshot,
                                         stop, first_index, drain, end)
        finally:
            gc.unfreeze()

    async def _run_stage(self, chunks, start_ns, end_ns, interval_ns, on_snapshot, stop,
                         first_index, drain, end) -> bool:
        core = self.core
        woke = await sleep_until_ns(start_ns, stop, end)
        if end is not None and woke is end:
            return False  # ended before it began
        # Completions since the previous stage (if any) fall into this stage's first interval.
        core.start(start_ns, end_ns, chunk_source(chunks))
        k, prev_ns, stopped = 0, start_ns, False
        self._cpu_mark_s = time.process_time()
        while True:
            boundary_ns = min(start_ns + (k + 1) * interval_ns, end_ns)
            woke = await sleep_until_ns(boundary_ns, stop, end)
            if end is not None and woke is end:
                core.stop()
                return False
            stopped = woke is not None
            if stopped:
                core.stop()
                boundary_ns = monotonic_ns()
            else:
                core.pump()
            snap = IntervalSnapshot.from_core(
                first_index + k, (boundary_ns - start_ns) / 1e9, (boundary_ns - prev_ns) / 1e9,
                core.take_interval(), class_names=self.class_names)
            snap.mono_start_ns, snap.mono_end_ns = prev_ns, boundary_ns
            snap.cpu_s = self._cpu_since_mark()
            end_now = on_snapshot(snap)
            prev_ns = boundary_ns
            k += 1
            if stopped or boundary_ns >= end_ns:
                break
            if end_now:
                core.stop()
                break
        if drain:
            await self.drain(start_ns, prev_ns, first_index + k, on_snapshot, stop, stopped)
        return stopped

    async def drain(self, start_ns: int, t0: int, index: int, on_snapshot, stop,
                    stopped: bool) -> None:
        """Wait for what is in flight (at most --timeout, 1 s after a stop), then report it.

        t0 is where the last load interval was cut: the drain interval starts there.
        """
        core = self.core
        limit_ns = int(min(self.spec.timeout_s, 1.0) * 1e9) if stopped else int(
            self.spec.timeout_s * 1e9) + 50_000_000
        while core.inflight and monotonic_ns() - t0 < limit_ns:
            if stop is not None and stop.is_set() and not stopped:
                stopped = True
                limit_ns = min(limit_ns, int(1e9))
            await asyncio.sleep(0.002)
        if core.inflight:
            core.abandon(f"still in flight when the run ended (drained {limit_ns / 1e9:g} s)")
        now = monotonic_ns()
        snap = IntervalSnapshot.from_core(
            index, (now - start_ns) / 1e9, (now - t0) / 1e9, core.take_interval(), drain=True,
            class_names=self.class_names)
        snap.mono_start_ns, snap.mono_end_ns = t0, now
        snap.cpu_s = self._cpu_since_mark()
        on_snapshot(snap)

    def _cpu_since_mark(self) -> float:
        """This process's CPU seconds (user + system, every thread) since the last mark."""
        now = time.process_time()
        spent, self._cpu_mark_s = now - self._cpu_mark_s, now
        return spent

    async def wait_idle(self, max_s: float) -> float:
        """Offer nothing until nothing is in flight (at most max_s; the rest are abandoned as
        timeouts). Returns the seconds waited; what completed meanwhile is discarded."""
        t0 = monotonic_ns()
        while self.core.inflight and monotonic_ns() - t0 < max_s * 1e9:
            await asyncio.sleep(0.005)
        if self.core.inflight:
            self.core.abandon(f"still in flight after a {max_s:g} s drain between steps")
        self.core.take_interval()
        return (monotonic_ns() - t0) / 1e9

    def close(self) -> None:
        self.core.close()
