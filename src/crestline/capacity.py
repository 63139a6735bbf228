"""The capacity search on the real engine: the pure policy (crestline.search.policy) drives one
Engine, stage by stage, on warm connections; steps and intervals go to the runlog as they
finish.

    from crestline.capacity import search
    result = search("http://127.0.0.1:8000/", slo=["p99=25ms"], max_rate_rps=5000)
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from crestline import __version__
from crestline.engine.spec import RunSpec, preflight
from crestline.engine.workload import Workload
from crestline.errors import ConfigError
from crestline.measure.result import IntervalSnapshot
from crestline.search.policy import Done, Drain, Offer, SearchConfig, SearchPolicy, Step
from crestline.slo.parse import Slo, parse_slo
from crestline.units import parse_duration_s, parse_rate_rps


def make_config(slo, **limits) -> SearchConfig:
    """SearchConfig from an SLO (Slo or ['p99=25ms', ...]) and limits, which may be numbers
    or strings with units ('1k', '30s'). Raises ConfigError."""
    if not isinstance(slo, Slo):
        slo = parse_slo(list(slo) if not isinstance(slo, str) else [slo])
    for name in ("start_rate_rps", "max_rate_rps"):
        if name in limits:
            limits[name] = parse_rate_rps(limits[name], "--" + name[:-4].replace("_", "-"))
    for name in ("step_s", "max_step_s", "max_time_s", "max_warmup_s", "interval_s"):
        if name in limits:
            limits[name] = parse_duration_s(limits[name], name)
    if "warmup" in limits and limits["warmup"] not in ("auto", "none"):
        limits["warmup"] = parse_duration_s(limits["warmup"], "--warmup")
    if "step_s" in limits and "max_step_s" not in limits:
        limits["max_step_s"] = 3 * limits["step_s"]
    unknown = set(limits) - set(SearchConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown search option(s) {sorted(unknown)}")
    cfg = SearchConfig(slo=slo, **limits)
    if cfg.start_rate_rps <= 0 or cfg.max_rate_rps < cfg.start_rate_rps:
        raise ConfigError(f"--start-rate ({cfg.start_rate_rps:g}) must be positive and at most "
                          f"--max-rate ({cfg.max_rate_rps:g})")
    if not 0 < cfg.tolerance < 0.5:
        raise ConfigError(f"--tolerance {cfg.tolerance:g} must lie between 0 and 50%, e.g. 2%")
    if cfg.max_steps < 2:
        raise ConfigError("--max-steps must be at least 2")
    if cfg.step_s < 3 * cfg.interval_s:
        raise ConfigError(f"--step-duration must hold at least 3 intervals of {cfg.interval_s:g} s")
    if not cfg.slo.latency and cfg.slo.max_error_rate is None and not cfg.slo.gpu:
        raise ConfigError("give at least one --slo, e.g. --slo p99=25ms")
    return cfg


async def search_async(spec: RunSpec, config: SearchConfig, *,
                       on_step: Callable[[dict, SearchPolicy], None] | None = None,
                       on_interval: Callable[[IntervalSnapshot], None] | None = None,
                       runlog: str | None = None, stop: asyncio.Event | None = None,
                       gpu: str | None = None, gpu_period_s: float = 0.1,
                       on_warning: Callable[[str], None] | None = None) -> dict:
    """Search for the highest rate meeting config.slo; returns the result dict (docs/search.md).

    spec shapes the traffic (URL, arrival, payload, connections, timeout); its rate and
    duration are ignored. gpu: 'nvml', 'nvml:0,1' or 'dcgm=URL' samples GPU telemetry every
    gpu_period_s on its own thread (a GPU that cannot be read is a warning, not an error).
    Raises ConfigError before any load if the spec or target is wrong.
    """
    from crestline.engine.stage import Engine, monotonic_ns
    from crestline.measure.runlog import RunlogWriter
    from crestline.telemetry.recorder import GpuTelemetry

    spec.validated()
    if spec.workers > 1:
        raise ConfigError("crestline search runs one client process in this version: "
                          "drop --workers (or use --batch-window to lower client CPU)")
    telemetry = GpuTelemetry.for_slo(gpu, gpu_period_s, config.slo)
    workload = Workload.for_spec(spec)  # loads and renders a trace before any load
    await preflight(spec.target)
    warnings: list[str] = []
    if telemetry:
        warnings += telemetry.start()
        if config.slo.gpu and not telemetry.sampler.available:
            if not config.slo.latency and config.slo.max_error_rate is None:
                # Nothing else would be judged: every step would "pass" unmeasured.
                raise ConfigError(f"the SLO has only GPU bounds and GPU telemetry is off "
                                  f"({'; '.join(warnings)}): fix --gpu, or add a latency "
                                  "bound such as --slo p99=25ms")
            warnings.append("GPU bounds in the SLO are not checked: no GPU figures")
        for w in warnings:
            if on_warning:
                on_warning(w)
    stop = stop or asyncio.Event()
    # A batch window delays slots on purpose: widen the client-validity bound by it (on a copy:
    # the caller's config stays as given).
    config = dataclasses.replace(config, max_schedule_lag_p99_ms=(
        spec.max_schedule_lag_p99_ms + spec.batch_window_s * 1e3))
    policy = SearchPolicy(config)
    started = time.time()
    header = spec.to_dict() | {"version": __version__, "search": config.to_dict()}
    try:
        log = RunlogWriter(runlog, header, started) if runlog else None
        engine = Engine(spec, payloads=workload.payloads, classes=workload.core_classes(),
                        class_names=workload.class_names)
    except BaseException:
        if telemetry:  # its polling thread runs: nothing else would stop it
            telemetry.stop()
        raise
    trace_rate = workload.trace_rate_rps()
    stage_s = config.max_step_s + (config.settle_intervals + 2) * config.interval_s
    reported: set[int] = set()
    action = policy.start()
    stages = 0
    intervals_seen = [0]  # runlog indices run on across stages
    interrupted = False
    snaps: list[IntervalSnapshot] = []
    search_start_ns = monotonic_ns()

    def report_steps():
        for i, step in enumerate(policy.steps):
            if step.verdict is not None and i not in reported:
                reported.add(i)
                d = step.to_dict()
                if log:
                    log.record("step", {"index": i, **d})
                if on_step:
                    on_step(d, policy)

    try:
        while not isinstance(action, Done):
            if stop.is_set():
                interrupted = True
                policy._finish("interrupted", converged=False)
                break
            if isinstance(action, Offer):
                rate = action.rate_rps
                box = [action]

                def on_snap(snap: IntervalSnapshot, rate=rate, box=box) -> bool:
                    intervals_seen[0] += 1
                    snap.rate_rps = rate
                    if telemetry:
                        telemetry.attach(snap)
                    box[0] = policy.on_interval(snap)  # tags snap.step
                    snaps.append(snap)
                    if log:
                        log.interval(snap)
                    if on_interval:
                        on_interval(snap)
                    report_steps()
                    nxt = box[0]
                    return not (isinstance(nxt, Offer) and nxt.rate_rps == rate)

                seed = None if spec.seed is None else spec.seed + stages
                stages += 1
                # With arrival "trace" a rate is a replay speed: the trace's own rate x speed,
                # looped for as long as the stage lasts.
                speed = rate / trace_rate if spec.arrival == "trace" else spec.speed
                chunks = workload.chunks(spec.arrival, rate, stage_s, seed, speed=speed,
                                         loop=True)
                stage_start_ns = monotonic_ns() + 1_000_000
                if telemetry:
                    telemetry.align(stage_start_ns, int(config.interval_s * 1e9))
                await engine.run_stage(chunks, stage_start_ns, stage_s, on_snap,
                                       stop, first_index=intervals_seen[0], drain=False)
                action = box[0]
            elif isinstance(action, Drain):
                waited = await engine.wait_idle(spec.timeout_s + 1.0)
                action = policy.on_drained(waited)
        report_steps()
    finally:
        engine.close()
        if telemetry:
            telemetry.stop()
        # Built at the end: warm-up intervals join the first step only once it exists.
        # Stages restart t_s, so elapsed_s is the search's own clock, drains included.
        interval_dicts = [s.to_dict() | {"elapsed_s": round(
            (s.mono_end_ns - search_start_ns) / 1e9, 6)} for s in snaps]
        result = policy.result() | {"url": spec.url, "crestline": __version__,
                                    "started_unix_s": started, "interrupted": interrupted,
                                    "spec": spec.to_dict(), "warnings": warnings,
                                    "intervals": interval_dicts}
        if telemetry:
            result["gpu"] = telemetry.record([d["gpu"] for d in interval_dicts], warnings)
        if log:
            log.close(result)
    return result


def search(url: str, slo, *, on_step=None, on_interval=None, runlog=None, gpu=None,
           gpu_period_s: float = 0.1, on_warning=None, **options) -> dict:
    """Blocking search on a fresh uvloop. options: RunSpec traffic fields (arrival, seed,
    connections, max_inflight, timeout_s, method, headers, body, interval_s, batch_window_s,
    precise) and SearchConfig limits (start_rate_rps, max_rate_rps, step_s, max_step_s,
    tolerance, max_steps, max_time_s, warmup)."""
    import uvloop

    limit_names = set(SearchConfig.__dataclass_fields__) - {"slo"}
    limits = {k: options.pop(k) for k in list(options) if k in limit_names}
    if "rate_rps" in options or "duration_s" in options:
        raise ConfigError("a search chooses its own rates and durations: drop rate_rps and "
                          "duration_s (use start_rate_rps, max_rate_rps, step_s)")
    interval_s = options.get("interval_s", 1.0)
    config = make_config(slo, interval_s=interval_s, **limits)
    spec = RunSpec(url=url, rate_rps=config.start_rate_rps, duration_s=1.0, **options)
    return uvloop.run(search_async(spec, config, on_step=on_step, on_interval=on_interval,
                                   runlog=runlog, gpu=gpu, gpu_period_s=gpu_period_s,
                                   on_warning=on_warning))


__all__ = ["search", "search_async", "make_config", "Step"]
