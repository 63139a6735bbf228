"""The capacity search on the real engine: the pure policy (crestline.search.policy) drives one
Engine, stage by stage, on warm connections; steps and intervals go to the runlog as they
finish.

    from crestline.capacity import search
    result = search("http://127.0.0.1:8000/", slo=["p99=25ms"], max_rate_rps=5000)
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from crestline import __version__
from crestline.engine.pool import Stage
from crestline.engine.spec import RunSpec
from crestline.errors import ConfigError
from crestline.measure.cpu import client_cpu_summary, cpu_warnings, host_cores
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
    if not cfg.slo.bounds:
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
    from crestline.outputs import check_outputs
    from crestline.session import LoadSession, drive_logged

    check_outputs(runlog=runlog)
    # With arrival "trace" a rate is a replay speed: the trace's own rate x speed, looped for as
    # long as the stage lasts.
    session = await LoadSession.open(spec, slo=config.slo, gpu=gpu, gpu_period_s=gpu_period_s,
                                     replay_follows_rate=True, gpu_only_slo_ok=False,
                                     on_warning=on_warning)
    config = session_config(spec, config)
    header = spec.to_dict() | {"version": __version__, "search": config.to_dict()}
    return await drive_logged(
        session, runlog, header,
        lambda log: SearchDriver(session, SearchPolicy(config), log, on_step, on_interval),
        stop)


def session_config(spec: RunSpec, config: SearchConfig) -> SearchConfig:
    """config as a search over an open session of spec runs it (a copy: the caller's stays as
    given). A batch window delays slots on purpose, so the client-validity bound widens by it;
    the arrival process is what the capacity holds for; the workers (or actors, once the pool
    is open) say how much client CPU is saturation."""
    return dataclasses.replace(config, max_schedule_lag_p99_ms=(
        spec.max_schedule_lag_p99_ms + spec.batch_window_s * 1e3),
        batch_window_ms=spec.batch_window_s * 1e3, arrival=spec.arrival, workers=spec.workers)


class SearchDriver:
    """One search driving one session's pool: stages at the policy's rates, on warm
    connections, every interval to the policy, the runlog and the caller as it closes."""

    def __init__(self, session, policy: SearchPolicy, log, on_step, on_interval):
        from crestline.engine.stage import monotonic_ns

        self.session, self.policy, self.log = session, policy, log
        self.on_step, self.on_interval = on_step, on_interval
        self.snaps: list[IntervalSnapshot] = []
        self.reported: set[int] = set()
        self.stages = 0
        self.interrupted = False
        self.start_ns = monotonic_ns()
        self.action = None  # the policy's next action; None before the start

    async def run(self, stop: asyncio.Event) -> None:
        while await self.advance(stop):
            pass

    async def advance(self, stop: asyncio.Event) -> bool:
        """Carry out the policy's next action: a stage at its rate (ended when the rate
        changes) or a drain. False once the search is done or `stop` ended it."""
        cfg, spec, policy = self.policy.cfg, self.session.spec, self.policy
        stage_s = cfg.max_step_s + (cfg.settle_intervals + 2) * cfg.interval_s
        action = policy.start() if self.action is None else self.action
        if not isinstance(action, Done):
            if stop.is_set():
                self.interrupted = True
                policy.interrupt()
                action = Done()
            elif isinstance(action, Offer):
                seed = None if spec.seed is None else spec.seed + self.stages
                self.stages += 1
                stage = Stage(action.rate_rps, stage_s, seed, loop=True,
                              first_index=len(self.snaps), drain=False, start_margin_s=0.001)
                self.next_action = action
                await self.session.run_stage(stage, self._on_snapshot, stop)
                action = self.next_action
            elif isinstance(action, Drain):
                waited = await self.session.wait_idle(spec.timeout_s + 1.0)
                action = policy.on_drained(waited)
        self.action = action
        self._report_steps()
        return not isinstance(action, Done)

    def _on_snapshot(self, snap: IntervalSnapshot) -> bool:
        """Feed one interval to the policy; True ends the stage (the next step has another
        rate, or the search is done)."""
        rate = self.next_action.rate_rps
        self.next_action = self.policy.on_interval(snap)  # tags its step, rate and warm-up
        self.snaps.append(snap)
        if self.log:
            self.log.interval(snap)
        if self.on_interval:
            self.on_interval(snap)
        self._report_steps()
        nxt = self.next_action
        return not (isinstance(nxt, Offer) and nxt.rate_rps == rate)

    def _report_steps(self) -> None:
        for i, step in enumerate(self.policy.steps):
            if step.verdict is not None and i not in self.reported:
                self.reported.add(i)
                d = step.to_dict()
                if self.log:
                    self.log.record("step", {"index": i, **d})
                if self.on_step:
                    self.on_step(d, self.policy)

    def result(self, started_unix_s: float) -> dict:
        session, spec = self.session, self.session.spec
        # Built at the end: warm-up intervals join the first step only once it exists.
        # Stages restart t_s, so elapsed_s is the search's own clock, drains included.
        interval_dicts = [s.to_dict() | {"elapsed_s": round(
            (s.mono_end_ns - self.start_ns) / 1e9, 6)} for s in self.snaps]
        result = self.policy.result() | {
            "url": spec.url, "crestline": __version__, "started_unix_s": started_unix_s,
            "interrupted": self.interrupted, "workers": session.pool.workers if session.pool
            else spec.workers, "spec": spec.to_dict(), "warnings": session.warnings,
            "intervals": interval_dicts}
        cpu = client_cpu_summary(self.snaps, result["workers"], host_cores())
        result["client_cpu"] = cpu
        for line in cpu_warnings(cpu):
            if line not in session.warnings:
                session.warnings.append(line)
        if session.telemetry:
            result["gpu"] = session.gpu_record([d["gpu"] for d in interval_dicts],
                                               session.warnings)
        return result


def search(url: str, slo, *, on_step=None, on_interval=None, runlog=None, gpu=None,
           gpu_period_s: float = 0.1, on_warning=None, **options) -> dict:
    """Blocking search on a fresh uvloop. options: RunSpec traffic fields (arrival, seed,
    connections, max_inflight, timeout_s, method, headers, body, interval_s, batch_window_s,
    precise) and SearchConfig limits (start_rate_rps, max_rate_rps, step_s, max_step_s,
    tolerance, max_steps, max_time_s, warmup)."""
    import uvloop

    # Fields the spec owns (workers, arrival, interval_s) go to the spec; the search takes them
    # from it (search_async), so they are never split between the two.
    limit_names = (set(SearchConfig.__dataclass_fields__) - {"slo"}
                   - set(RunSpec.__dataclass_fields__))
    limits = {k: options.pop(k) for k in list(options) if k in limit_names}
    if "rate_rps" in options or "duration_s" in options:
        raise ConfigError("a search chooses its own rates and durations: drop rate_rps and "
                          "duration_s (use start_rate_rps, max_rate_rps, step_s)")
    # interval_s is both: the spec's interval grid and the policy's unit of judgement.
    limits.setdefault("interval_s", options.get("interval_s", 1.0))
    config = make_config(slo, **limits)
    options["interval_s"] = config.interval_s
    options.setdefault("arrival", "poisson")  # as the CLI: see cli._add_run_options
    spec = RunSpec(url=url, rate_rps=config.start_rate_rps, duration_s=1.0, **options)
    return uvloop.run(search_async(spec, config, on_step=on_step, on_interval=on_interval,
                                   runlog=runlog, gpu=gpu, gpu_period_s=gpu_period_s,
                                   on_warning=on_warning))


__all__ = ["search", "search_async", "make_config", "session_config", "SearchDriver", "Step"]
