"""The Python API: the same run the CLI does, for embedding in other harnesses.

    result = crestline.run("http://127.0.0.1:8000/", rate_rps=2000, duration_s=10)
    result = await crestline.run_async(url, rate_rps=2000, duration_s=10, on_interval=print)

Both validate everything and connect once to the target before sending load; they raise
ConfigError (with the fix in its message) when something is wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from crestline import __version__
from crestline.engine.pool import Stage
from crestline.engine.spec import RunSpec
from crestline.measure.cpu import cpu_warnings
from crestline.measure.result import IntervalSnapshot, RunResult


def _make_spec(url: str | None, spec: RunSpec | None, kwargs: dict) -> RunSpec:
    if spec is None:
        if url is None:
            raise TypeError("give a url (and rate_rps, duration_s) or a RunSpec")
        spec = RunSpec(url=url, **kwargs)
    elif kwargs or url is not None:
        raise TypeError("give either a RunSpec or url and keyword options, not both")
    return spec.validated()


async def run_async(url: str | None = None, *, spec: RunSpec | None = None,
                    on_interval: Callable[[IntervalSnapshot], None] | None = None,
                    runlog: str | None = None, hdr_log: str | None = None,
                    stop: asyncio.Event | None = None, gpu: str | None = None,
                    gpu_period_s: float = 0.1, slo=None,
                    on_warning: Callable[[str], None] | None = None,
                    **options) -> RunResult:
    """Run one open-loop load on the running event loop and return its RunResult.

    options are RunSpec fields: rate_rps (req/s), duration_s (s), arrival, seed, connections,
    max_inflight, timeout_s, method, headers, body, workers, interval_s, precise,
    batch_window_s, max_schedule_lag_p99_ms, min_issued_ratio; for gRPC JSON bodies proto,
    proto_path, descriptor_set (docs/grpc.md); the full list is RunSpec's (docs/python-api.md).
    on_interval(snapshot) is called once per interval as the run goes (and once for the drain).
    runlog / hdr_log: paths written one interval at a time. Setting `stop` ends the run early;
    the result then has interrupted=True and keeps every finished interval.
    gpu: 'nvml', 'nvml:0,1' or 'dcgm=URL' samples GPU telemetry every gpu_period_s on its own
    thread, aligned with the intervals (unreadable GPUs give warnings, via on_warning too).
    slo: ['p99=25ms', ...] or an Slo: the result says whether the whole run met it.
    Raises ConfigError before any load is sent if an option is wrong or the target refuses.
    """
    from crestline.measure.cpu import host_cores
    from crestline.measure.runlog import HdrLogWriter, RunlogWriter
    from crestline.outputs import check_outputs
    from crestline.session import LoadSession
    from crestline.slo.parse import Slo, parse_slo

    spec = _make_spec(url, spec, options)
    check_outputs(runlog=runlog, hdr_log=hdr_log)
    if slo is not None and not isinstance(slo, Slo):
        slo = parse_slo([slo] if isinstance(slo, str) else list(slo))
    session = await LoadSession.open(spec, slo=slo, gpu=gpu, gpu_period_s=gpu_period_s,
                                     on_warning=on_warning)
    stop = stop or asyncio.Event()
    spec_dict = spec.to_dict() | {"version": __version__, "workload": session.describe_workload()}
    result = RunResult(spec_dict, time.time(), host_cores=host_cores())
    result.warnings += session.warnings
    sinks = []

    def on_snapshot(snap: IntervalSnapshot) -> None:
        if not result.intervals:
            # Wall-clock start of the load: interval times count from there.
            result.started_unix_s = time.time() - snap.t_s
            if runlog:
                sinks.append(RunlogWriter(runlog, spec_dict, result.started_unix_s))
            if hdr_log:
                sinks.append(HdrLogWriter(hdr_log, result.started_unix_s))
        result.add(snap)
        for sink in sinks:
            sink.interval(snap)
        if on_interval is not None:
            on_interval(snap)

    try:
        result.interrupted = await session.run_stage(
            Stage(spec.rate_rps, spec.duration_s, spec.seed), on_snapshot, stop)
        _add_warnings(result, spec)
    except BaseException:
        result.interrupted = True
        for sink in sinks:
            sink.close(None)
        raise
    finally:
        await session.close()
    if session.telemetry:
        result.gpu = session.gpu_record([s.gpu for s in result.intervals], result.warnings)
    if slo is not None:
        result.slo_check = check_slo(result, slo)
    # The runlog's summary leaves the intervals out: its interval records hold them already
    # (the reader puts them back), and an hour's 3,600 interval dicts are an ~8 MiB line.
    summary = result.to_dict(intervals=False) if sinks else None
    for sink in sinks:
        sink.close(summary)
    return result


def run(url: str | None = None, **kwargs) -> RunResult:
    """Blocking form of run_async on a fresh uvloop event loop (same arguments)."""
    import uvloop

    return uvloop.run(run_async(url, **kwargs))


def _add_warnings(result: RunResult, spec: RunSpec) -> None:
    lag_p99_ms = result.hists["send_lag"].values_at((99.0,))[0] / 1e6
    # An interval's `connections` counts the core's channels: HTTP/2 streams, with --streams.
    slots = spec.connections * spec.streams
    # any(), not a list: each old interval is rebuilt as it is read (an hour's 3,600 at once
    # were the last +4 MiB of RSS in the soak).
    full = lag_p99_ms > 1.0 and any(not s.drain and s.connections >= slots
                                    for s in result.intervals)
    if full:
        what = (f"{spec.connections} connections x {spec.streams} streams" if spec.streams > 1
                else f"{spec.connections} connections")
        result.warnings.append(
            f"requests waited for a free connection (send lag p99 {lag_p99_ms:.1f} ms with all "
            f"{what} open): latency includes that wait; if the server has spare capacity, "
            "raise --connections" + (" or --streams" if spec.http2 else ""))
    result.warnings += cpu_warnings(result.client_cpu())
    if result.counters["shed"]:
        result.warnings.append(
            f"{result.counters['shed']} requests shed at --max-inflight {spec.max_inflight}")


def check_slo(result: RunResult, slo) -> dict:
    """Did the whole run meet slo (an Slo)? {"slo": {...}, "met": bool, "why": [...]}, from
    crestline.slo.evaluate: percentiles on the run's pooled latency histogram, errors over
    every scheduled request, GPU bounds over the run's folded GPU figures."""
    from crestline.slo.bound import Pool
    from crestline.slo.evaluate import check

    return check(slo, Pool.of_run(result))
