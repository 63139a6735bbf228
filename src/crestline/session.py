"""One load session, set up the same way for `run` and `search`: the spec checked, GPU
telemetry started, the workload rendered, the target reached once, and a pool of engines
opened; then stages offered through it with telemetry attached to every interval.

Everything that can be wrong with the caller's input is found before the pool opens, so a
ConfigError always comes before any load is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from crestline.engine.arrivals import Arrival
from crestline.engine.pool import LocalPool, OnSnapshot, Pool, Stage
from crestline.engine.spec import RunSpec, preflight
from crestline.engine.workload import Workload
from crestline.errors import ConfigError
from crestline.measure.cpu import HostCpu
from crestline.measure.result import IntervalSnapshot
from crestline.slo.stream import per_request_ns
from crestline.telemetry.recorder import GpuTelemetry


class LoadSession:
    """The spec, its workload and arrival process, the pool and the GPU telemetry of one run or
    search. Open with `await LoadSession.open(...)`; always `await close()`."""

    def __init__(self, spec: RunSpec, workload: Workload, arrival, telemetry, warnings):
        self.spec, self.workload, self.arrival = spec, workload, arrival
        self.telemetry: GpuTelemetry | None = telemetry
        self.warnings: list[str] = warnings
        self.pool: Pool | None = None
        self._host_cpu = HostCpu()
        self._on_warning: Callable[[str], None] | None = None

    @classmethod
    async def open(cls, spec: RunSpec, *, slo=None, gpu: str | None = None,
                   gpu_period_s: float = 0.1, replay_follows_rate: bool = False,
                   gpu_only_slo_ok: bool = True,
                   on_warning: Callable[[str], None] | None = None) -> LoadSession:
        """Set up everything before any load. replay_follows_rate: a trace replay's speed
        follows each stage's rate (a search) instead of --speed (a run). gpu_only_slo_ok=False:
        an SLO of GPU bounds alone with no GPU figures is a ConfigError (nothing would be
        judged). Raises ConfigError naming the fix."""
        spec.validated()
        tolerance_ms = slo.lag_tolerance_ms() if slo is not None else None
        if tolerance_ms is not None:
            # Under an SLO the client is late only next to its tightest latency bound: the
            # same rule a search's step verdicts use, so a sweep row and a step agree.
            spec.max_schedule_lag_p99_ms = tolerance_ms
        if slo is not None:
            spec.good_stream_ns = per_request_ns(slo.bounds)
        telemetry = GpuTelemetry.for_slo(gpu, gpu_period_s, slo)
        workload = Workload.for_spec(spec)  # loads and renders a trace before any load
        if spec.proto_schema is not None and spec.trace:
            _encode_records(spec, workload)
        arrival = workload.arrival(spec.arrival, None if replay_follows_rate else spec.speed)
        await preflight(spec.target)
        session = cls(spec, workload, arrival, telemetry, workload.secret_warnings(spec))
        session._on_warning = on_warning
        try:
            if telemetry:
                session._warn(telemetry.start())
            if (not gpu_only_slo_ok and telemetry and slo is not None and slo.gpu
                    and not telemetry.sampler.available):
                if not slo.latency and slo.max_error_rate is None:  # nothing would be judged
                    raise ConfigError(
                        f"the SLO has only GPU bounds and GPU telemetry is off "
                        f"({'; '.join(session.warnings)}): fix --gpu, or add a latency "
                        "bound such as --slo p99=25ms")
                session._warn(["GPU bounds in the SLO are not checked: no GPU figures"])
            session.pool = await open_pool(spec, workload, arrival)
        except BaseException:
            await session.close()  # the sampler's thread runs: nothing else would stop it
            raise
        return session

    def _warn(self, lines) -> None:
        for line in lines:
            self.warnings.append(line)
            if self._on_warning is not None:
                self._on_warning(line)

    def describe_workload(self) -> dict:
        w = self.workload
        return {"source": w.source, "records": w.records, "distinct_requests": len(w.payloads)}

    async def run_stage(self, stage: Stage, on_snapshot: OnSnapshot,
                        stop: asyncio.Event | None = None) -> bool:
        """Offer one stage through the pool; each interval gets its GPU window before
        on_snapshot sees it. True if `stop` cut the stage short."""
        telemetry = self.telemetry
        interval_ns = int(self.spec.interval_s * 1e9)
        host = self._host_cpu

        def on_start(start_ns: int) -> None:
            host.busy_s()  # what the host did before the stage (a drain, set-up) is not in it
            if telemetry:  # polls at the mid-points of the stage's interval grid
                telemetry.align(start_ns, interval_ns)

        def observe(snap: IntervalSnapshot):
            # Read as each merged interval arrives, a few ms after its boundary at most.
            snap.host_busy_s = host.busy_s()
            if telemetry:
                telemetry.attach(snap)
            return on_snapshot(snap)

        return await self.pool.run_stage(stage, observe, stop, on_start)

    async def wait_idle(self, max_s: float) -> float:
        return await self.pool.wait_idle(max_s)

    def gpu_record(self, windows: list, warnings: list[str]) -> dict | None:
        return self.telemetry.record(windows, warnings) if self.telemetry else None

    async def close(self) -> None:
        try:
            if self.pool is not None:
                await self.pool.close()
        finally:
            if self.telemetry:
                self.telemetry.stop()


async def drive_logged(session: LoadSession, runlog: str | None, header: dict, make_driver,
                       stop: asyncio.Event | None = None) -> dict:
    """Run a driver over an open session with a runlog: the runlog opened first (its header),
    driver = make_driver(log) run until done or `stop`, the session closed whatever happens,
    and driver.result(started_unix_s) written as the runlog's summary and returned. A search
    and a sweep are both this shape."""
    from crestline.measure.runlog import RunlogWriter

    started = time.time()
    try:
        log = RunlogWriter(runlog, header, started) if runlog else None
    except BaseException:
        await session.close()
        raise
    driver = make_driver(log)
    try:
        await driver.run(stop or asyncio.Event())
    finally:
        await session.close()
        result = driver.result(started)
        if log:
            log.close(result)
    return result


async def open_pool(spec: RunSpec, workload: Workload, arrival: Arrival) -> Pool:
    """The pool the spec asks for: one engine here, or spec.workers engine processes. Raises
    CrestlineError if a worker process cannot start; with spec.cluster, Ray engine actors
    (crestline.engine.ray), ConfigError if the cluster cannot hold them."""
    if spec.cluster:
        from crestline.engine.ray.pool import RayPool

        return await RayPool.open(spec, workload, arrival)
    if spec.workers > 1:
        from crestline.engine.workers import WorkerPool

        return await WorkerPool.open(spec, arrival)
    pool = LocalPool(spec, workload, arrival)
    try:
        await pool.engine.preopen()
    except BaseException:
        await pool.close()
        raise
    return pool


def _encode_records(spec: RunSpec, workload: Workload) -> None:
    """Each distinct trace record through the schema once, here: a record the schema refuses
    is refused before preflight connects (and once, not per worker), and the messages are
    in the schema's cache when the spec goes to workers, which then encode nothing."""
    import numpy as np

    target = spec.grpc_target()
    _, first = np.unique(workload.record_payload, return_index=True)  # in record order
    for payload, record in zip(workload.payloads, first.tolist(), strict=True):
        target.call_for(payload, f"--trace {spec.trace} record {record}")
