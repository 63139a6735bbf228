"""The latency-throughput sweep on the real engine: a ladder of fixed rates offered open-loop,
one step each, on one session's warm connections, after a warm-up kept out of every figure.

    from crestline.sweep import sweep
    result = sweep("http://127.0.0.1:8000/", rates_rps="100:1000:100", step_s=30,
                   slo=["p99=25ms"], arrival="poisson", seed=1)
    print(result["crossing"])

The rows, the crossing and the result's shape are pure (crestline.search.sweep); this module
offers the stages: warm-up at the first rate, then for each rate one stage with its drain,
then a wait until nothing is in flight so that one step's queue never spoils the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from crestline import __version__
from crestline.engine.pool import Stage
from crestline.engine.spec import RunSpec
from crestline.errors import ConfigError
from crestline.measure.cpu import client_cpu_summary, cpu_warnings, host_cores
from crestline.measure.result import Intervals, IntervalSnapshot
from crestline.search.sweep import (
    MAX_WARMUP_S,
    SweepConfig,
    make_sweep_config,
    sweep_result,
    sweep_row,
    warmup_note,
)
from crestline.search.warmup import is_warm


async def sweep_async(spec: RunSpec, rates_rps, *, step_s="60s", settle_intervals: int = 1,
                      warmup="auto", max_warmup_s=MAX_WARMUP_S, slo=None,
                      on_interval: Callable[[IntervalSnapshot], None] | None = None,
                      on_row: Callable[[dict], None] | None = None,
                      runlog: str | None = None, stop: asyncio.Event | None = None,
                      gpu: str | None = None, gpu_period_s: float = 0.1,
                      on_warning: Callable[[str], None] | None = None) -> dict:
    """Sweep the ladder rates_rps on the running event loop; returns the result dict
    (docs/measurement.md#the-sweep---out-json).

    spec shapes the traffic (URL, arrival, seed, payload, connections, timeout, interval); its
    rate and duration are ignored. rates_rps: '100:1000:50', '100,200,400' or numbers (rps,
    ascending). step_s: each step's length (s, or '60s'); settle_intervals: intervals at the
    start of each step left out of its row. warmup: 'auto' (hold the first rate until the
    median latency per interval is steady, at most max_warmup_s), 'none', or seconds to hold.
    slo: None, 'p99=25ms' or a list of terms: each row's terms and the crossing. The step at
    ladder index i is seeded with spec.seed + i. on_row(row) is called as each row finishes,
    on_interval(snapshot) for every interval. Setting `stop` ends the sweep: finished rows are
    kept and the result has interrupted=True. Raises ConfigError before any load is sent.
    """
    from crestline.outputs import check_outputs
    from crestline.session import LoadSession, drive_logged

    check_outputs(runlog=runlog)
    config = make_sweep_config(rates_rps, step_s=step_s, settle_intervals=settle_intervals,
                               warmup=warmup, max_warmup_s=max_warmup_s,
                               interval_s=spec.interval_s, slo=slo)
    # A trace replayed on its own timing follows each step's rate, as in a search.
    session = await LoadSession.open(spec, slo=config.slo, gpu=gpu, gpu_period_s=gpu_period_s,
                                     replay_follows_rate=True, gpu_only_slo_ok=False,
                                     on_warning=on_warning)
    header = spec.to_dict() | {"version": __version__, "sweep": config.to_dict()}
    return await drive_logged(session, runlog, header,
                              lambda log: _Sweep(session, config, log, on_interval, on_row), stop)


class _Sweep:
    """One sweep driving one session's pool: the warm-up, then one stage per rate."""

    def __init__(self, session, config: SweepConfig, log, on_interval, on_row):
        from crestline.engine.stage import monotonic_ns

        self.session, self.config, self.log = session, config, log
        self.on_interval, self.on_row = on_interval, on_row
        # pooled into the rows and in the runlog: older intervals are held packed
        self.snaps = Intervals()
        self.rows: list[dict] = []
        self.warmup_s: float | None = None
        self.warmup_note = ""
        self.interrupted = False
        self.start_ns = monotonic_ns()

    def _seed(self, offset: int) -> int | None:
        seed = self.session.spec.seed
        return None if seed is None else seed + offset

    async def run(self, stop: asyncio.Event) -> None:
        cfg, spec = self.config, self.session.spec
        if not await self._warm_up(stop):
            self.interrupted = True
            return
        for i, rate in enumerate(cfg.rates_rps):
            if stop.is_set():
                self.interrupted = True
                return
            step: list[IntervalSnapshot] = []
            stage = Stage(rate, cfg.step_s, self._seed(i), loop=True,
                          first_index=len(self.snaps), drain=True, start_margin_s=0.001)
            if await self.session.run_stage(stage, self._collect(i, rate, step), stop):
                self.interrupted = True  # a step cut short has no row
                return
            row = sweep_row(rate, step, spec.to_dict(), cfg.settle_intervals, cfg.slo)
            self.rows.append(row)
            if self.log:
                self.log.record("step", {"index": i, **row})
            if self.on_row:
                self.on_row(row)
            if i + 1 < len(cfg.rates_rps):
                # What a failing step left queued must not land in the next one.
                await self.session.wait_idle(spec.timeout_s + 1.0)

    async def _warm_up(self, stop: asyncio.Event) -> bool:
        """Hold the first rate as config.warmup says; False if `stop` cut it short."""
        cfg, spec = self.config, self.session.spec
        if cfg.warmup == "none":
            self.warmup_s = 0.0
            return True
        held: list[IntervalSnapshot] = []
        collect = self._collect(None, cfg.rates_rps[0], held)
        if cfg.warmup == "auto":
            def on_snapshot(snap: IntervalSnapshot) -> bool:
                collect(snap)
                return is_warm(_medians(held)) is not None
            hold_s = cfg.max_warmup_s
        else:
            on_snapshot, hold_s = collect, float(cfg.warmup)
        # Seeded apart from every step (those take seed + 0 .. seed + n - 1).
        stage = Stage(cfg.rates_rps[0], hold_s, self._seed(len(cfg.rates_rps)), loop=True,
                      first_index=0, drain=False, start_margin_s=0.001)
        if await self.session.run_stage(stage, on_snapshot, stop):
            return False  # warmup_s stays None: the warm-up did not end
        self.warmup_s = sum(s.dur_s for s in held)
        if cfg.warmup == "auto":
            self.warmup_note = warmup_note(self.warmup_s, cfg.rates_rps[0],
                                           is_warm(_medians(held)) is None)
        await self.session.wait_idle(spec.timeout_s + 1.0)
        return not stop.is_set()

    def _collect(self, step: int | None, rate_rps: float, into: list):
        def on_snapshot(snap: IntervalSnapshot) -> None:
            snap.step, snap.rate_rps, snap.warmup = step, rate_rps, step is None
            into.append(snap)
            self.snaps.append(snap)
            if self.log:
                self.log.interval(snap)
            if self.on_interval:
                self.on_interval(snap)
        return on_snapshot

    def result(self, started_unix_s: float) -> dict:
        session, spec = self.session, self.session.spec
        # Stages restart t_s: elapsed_s is the sweep's own clock, drains and waits included.
        intervals = [s.to_dict() | {"elapsed_s": round((s.mono_end_ns - self.start_ns) / 1e9, 6)}
                     for s in self.snaps]
        result = sweep_result(
            config=self.config, rows=self.rows, url=spec.url, version=__version__,
            started_unix_s=started_unix_s, interrupted=self.interrupted, spec=spec.to_dict(),
            workers=session.pool.workers if session.pool else spec.workers,
            warmup_s=self.warmup_s, warmup_note=self.warmup_note,
            load_s=sum(s.dur_s for s in self.snaps if not s.drain), intervals=intervals,
            warnings=session.warnings)
        # The client's CPU over the whole sweep, as a search reports it.
        result["client_cpu"] = cpu = client_cpu_summary(self.snaps, result["workers"],
                                                        host_cores())
        result["warnings"] += [w for w in cpu_warnings(cpu) if w not in result["warnings"]]
        if session.telemetry:
            result["gpu"] = session.gpu_record([d["gpu"] for d in intervals], session.warnings)
        return result


def _medians(snaps: list[IntervalSnapshot]) -> list[float]:
    """Median latency (ns) per interval, NaN where nothing completed: what is_warm reads."""
    return [s.latency.values_at((50.0,))[0] if s.latency.total else np.nan for s in snaps]


def sweep(url: str, rates_rps, *, step_s="60s", settle_intervals: int = 1, warmup="auto",
          max_warmup_s=MAX_WARMUP_S, slo=None, on_interval=None, on_row=None, runlog=None,
          gpu=None, gpu_period_s: float = 0.1, on_warning=None, **options) -> dict:
    """Blocking sweep on a fresh uvloop. options: RunSpec traffic fields (arrival, default
    'poisson'; seed, connections, max_inflight, timeout_s, method, headers, body, workers,
    interval_s, batch_window_s, precise, trace). The rest as for sweep_async. Raises
    ConfigError before any load."""
    import uvloop

    if "rate_rps" in options or "duration_s" in options:
        raise ConfigError("a sweep sets its own rates and step lengths: drop rate_rps and "
                          "duration_s (use rates_rps and step_s)")
    options.setdefault("arrival", "poisson")
    config = make_sweep_config(rates_rps, step_s=step_s, settle_intervals=settle_intervals,
                               warmup=warmup, max_warmup_s=max_warmup_s,
                               interval_s=options.get("interval_s", 1.0), slo=slo)
    options["interval_s"] = config.interval_s
    spec = RunSpec(url=url, rate_rps=config.rates_rps[0], duration_s=1.0, **options).validated()
    return uvloop.run(sweep_async(
        spec, config.rates_rps, step_s=config.step_s, settle_intervals=config.settle_intervals,
        warmup=config.warmup, max_warmup_s=config.max_warmup_s, slo=config.slo,
        on_interval=on_interval, on_row=on_row, runlog=runlog, gpu=gpu,
        gpu_period_s=gpu_period_s, on_warning=on_warning))


__all__ = ["sweep", "sweep_async"]
