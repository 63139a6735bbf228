"""Session: one target, one pool of engines with warm connections, stages at chosen rates.

The same LoadSession the CLI's run, search and sweep are built on (validate, telemetry,
workload, preflight, pool), so a stage here is measured exactly as `crestline run` measures
one, on any pool (`workers`, or `cluster`/`actors` for Ray).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from crestline import __version__
from crestline.embed.results import Interval, StageResult
from crestline.engine.pool import Stage
from crestline.engine.spec import RunSpec
from crestline.errors import ConfigError, CrestlineError
from crestline.measure.cpu import host_cores
from crestline.measure.result import IntervalSnapshot, RunResult

_END = object()


class Session:
    """An open load session. `await Session.open(url, **options)`; always close it (or use
    `async with`). One stage or search at a time."""

    def __init__(self, load_session):
        self._ls = load_session
        self._busy = False
        self._next_index = 0

    @classmethod
    async def open(cls, url: str, *, gpu: str | None = None, gpu_period_s: float = 0.1,
                   **options: Any) -> Session:
        """Validate, reach the target once (preflight) and open the pool. options: RunSpec
        traffic fields (arrival, seed, connections, max_inflight, timeout_s, method, headers,
        body, workers, cluster, actors, interval_s, trace, precise, batch_window_s); rates and
        durations are given per stage. A trace replayed on its own timing (arrival "trace")
        follows each stage's rate. Raises ConfigError before any load is sent."""
        from crestline.session import LoadSession

        if "rate_rps" in options or "duration_s" in options:
            raise ConfigError("a Session takes its rate and duration per stage: drop rate_rps "
                              "and duration_s, give them to stage()")
        spec = RunSpec(url=url, rate_rps=1.0, duration_s=1.0, **options)
        return cls(await LoadSession.open(spec, gpu=gpu, gpu_period_s=gpu_period_s,
                                          replay_follows_rate=True))

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def spec(self) -> RunSpec:
        return self._ls.spec

    @property
    def workers(self) -> int:
        """Engine processes (or Ray actors) the load is split across."""
        return self._ls.pool.workers

    @property
    def warnings(self) -> list[str]:
        return list(self._ls.warnings)

    def stage(self, rate_rps: float, duration_s: float, *, seed: int | None = None,
              drain: bool = True) -> StageRun:
        """A stage at rate_rps (req/s) for duration_s (s), started when first iterated (or
        awaited with `wait()`). seed: the arrival's (default: the session's seed). drain:
        wait for what is in flight at the end, reported as one more interval."""
        from crestline.units import parse_duration_s, parse_rate_rps

        rate_rps = parse_rate_rps(rate_rps, "rate_rps")
        duration_s = parse_duration_s(duration_s, "duration_s")
        stage = Stage(rate_rps, duration_s, self.spec.seed if seed is None else seed,
                      loop=True, drain=drain)
        return StageRun(self, stage)

    def search(self, slo, **limits: Any):
        """A capacity search on this session's warm pool, to step through (crestline.embed.
        Search). slo: 'p99=25ms' or a list of terms; limits: SearchConfig fields
        (start_rate_rps, max_rate_rps, step_s, max_step_s, tolerance, max_steps, max_time_s,
        warmup). Raises ConfigError."""
        from crestline.embed.search import Search

        return Search(self, slo, limits)

    async def wait_idle(self, max_s: float | None = None) -> float:
        """Offer nothing until nothing is in flight (at most max_s, default timeout_s + 1 s);
        what completes meanwhile is discarded. Returns the seconds waited."""
        return await self._ls.wait_idle(self.spec.timeout_s + 1.0 if max_s is None else max_s)

    async def close(self) -> None:
        await self._ls.close()

    # -- for StageRun and Search ----------------------------------------------------------
    def _claim(self) -> None:
        if self._busy:
            raise CrestlineError("this Session is running a stage or a search: one at a time")
        self._busy = True

    def _release(self) -> None:
        self._busy = False


class StageRun:
    """One stage: an async iterator of Interval (the drain last), then `result`."""

    def __init__(self, session: Session, stage: Stage):
        self._session, self._stage = session, stage
        self._queue: asyncio.Queue = asyncio.Queue()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._result: StageResult | None = None

    def __aiter__(self) -> AsyncIterator[Interval]:
        self._start()
        return self

    async def __anext__(self) -> Interval:
        item = await self._queue.get()
        if item is _END:
            self._task.result()  # the stage's own error, if it failed
            raise StopAsyncIteration
        return item

    async def wait(self) -> StageResult:
        """Run (or finish) the stage, ignoring the intervals as they come; its result."""
        async for _ in self:
            pass
        return self.result

    def end(self) -> None:
        """Stop scheduling now; what is in flight drains (at most 1 s), the result says
        interrupted. Safe to call from the iterating task."""
        self._stop.set()

    @property
    def result(self) -> StageResult:
        if self._result is None:
            raise CrestlineError("the stage has not finished: iterate it, or await wait()")
        return self._result

    def _start(self) -> None:
        if self._task is None:
            self._session._claim()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        s = self._session
        spec = s.spec
        stage = Stage(self._stage.rate_rps, self._stage.duration_s, self._stage.seed,
                      loop=self._stage.loop, first_index=s._next_index, drain=self._stage.drain)
        run = RunResult(spec.to_dict() | {"rate_rps": stage.rate_rps, "version": __version__},
                        time.time(), host_cores=host_cores())
        intervals: list[Interval] = []

        def on_snapshot(snap: IntervalSnapshot) -> None:
            run.add(snap)
            iv = Interval.from_snapshot(snap)
            intervals.append(iv)
            self._queue.put_nowait(iv)

        try:
            run.interrupted = await s._ls.run_stage(stage, on_snapshot, self._stop)
            s._next_index += len(intervals)
            self._result = StageResult.from_run(stage.rate_rps, run.to_dict(), intervals)
        finally:
            s._release()
            self._queue.put_nowait(_END)
