"""The capacity search policy: interval snapshots in, decisions out.

Pure: no clock, no sockets, no engine. The same policy drives the real engine (crestline
search) and the virtual-time simulator (crestline.search.sim), which is how it is tested against
servers whose true capacity is known. docs/search.md explains every rule.

Protocol: `start()` returns the first action; then, while the action is Offer(rate), the
driver offers that rate for one interval and calls `on_interval(snapshot)`; on Drain it lets
the server go idle and calls `on_drained()`; on Done the search is over and `result()` tells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from crestline.measure.hdr import Hist
from crestline.measure.result import IntervalSnapshot, add_classes
from crestline.search.judge import StepJudge, Verdict
from crestline.search.result import DISCARDED_WHY, search_result
from crestline.search.warmup import is_warm
from crestline.slo.parse import Slo
from crestline.telemetry.recorder import efficiency


@dataclass(frozen=True)
class Offer:
    rate_rps: float


@dataclass(frozen=True)
class Drain:
    pass


@dataclass(frozen=True)
class Done:
    pass


@dataclass
class SearchConfig:
    """Limits and knobs of one search. Units are in the names."""

    slo: Slo
    start_rate_rps: float = 100.0
    max_rate_rps: float = 1e6
    step_s: float = 10.0            # measured time a step needs before it may end undecided
    max_step_s: float = 30.0        # a step still undecided by then is judged on its estimate
    settle_intervals: int = 1       # intervals after a rate change left out of the verdict
    tolerance: float = 0.02         # stop when (hi - lo) / lo <= tolerance
    max_steps: int = 20
    max_time_s: float = 900.0       # load-seconds, warm-up and drains included
    warmup: str | float = "auto"    # "auto" | "none" | seconds to hold the first rate
    max_warmup_s: float = 120.0
    interval_s: float = 1.0
    grow_max: float = 2.0           # largest multiplicative step while bracketing
    max_schedule_lag_p99_ms: float = 1.0

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "slo"}
        d["slo"] = self.slo.to_dict()
        return d


@dataclass
class Step:
    rate_rps: float
    phase: str
    intervals: list = field(default_factory=list)
    verdict: Verdict | None = None
    discarded: bool = False  # judged during a warm-up found only later: no evidence

    def to_dict(self) -> dict:
        v = self.verdict
        measured = v.measured if v else []
        lat = Hist.empty()
        completed = scheduled = errors = 0
        classes: dict = {}
        for s in measured:
            add_classes(classes, s.classes)
            lat.add(s.latency)
            completed += s.completed
            scheduled += s.scheduled
            errors += s.errors
        p50, p99, p999 = lat.capped_values_at((50.0, 99.0, 99.9))
        dur = sum(s.dur_s for s in self.intervals)
        mdur = sum(s.dur_s for s in measured) or float("nan")
        achieved_rps = completed / mdur if measured else None
        return {
            "rate_rps": self.rate_rps,
            "phase": self.phase,
            "achieved_rps": achieved_rps,
            "verdict": v.verdict if v else None,
            "discarded": self.discarded,
            "latency_ms": {"p50": p50 / 1e6, "p99": p99 / 1e6, "p999": p999 / 1e6},
            "error_rate": errors / max(scheduled, 1),
            "duration_s": dur,
            "measured_s": sum(s.dur_s for s in measured),
            "samples": completed,
            "margin": v.margin if v else None,
            "distribution_ms": lat.distribution_ms(),
            "gpu": efficiency([s.gpu for s in measured], achieved_rps),
            # with a trace: which requests were slow at this rate
            **{family: {name: {"completed": h.total, "latency_ms": dict(zip(
                ("p50", "p99"), (v / 1e6 for v in h.capped_values_at((50.0, 99.0))),
                strict=True))}
                for name, h in sorted(hists.items(), key=lambda kv: -kv[1].total)}
               for family, hists in classes.items()},
            "why": (DISCARDED_WHY if self.discarded else "") + (v.why if v else ""),
        }


class SearchPolicy:
    """Bracket, then refine with a safeguarded secant on smoothed SLO margins."""

    def __init__(self, config: SearchConfig):
        self.cfg = config
        self.judge = StepJudge(config.slo, config.interval_s, config.settle_intervals,
                               config.step_s, config.max_step_s,
                               config.max_schedule_lag_p99_ms)
        self.steps: list[Step] = []
        self.warmup_series: list[IntervalSnapshot] = []
        self.warmup_s: float | None = None
        self.warmup_note = ""
        self.lo: float | None = None
        self.hi: float | None = None
        self.m_lo: float | None = None
        self.m_hi: float | None = None
        self.client_ceiling: float | None = None
        self.elapsed_s = 0.0  # load-seconds offered so far (warm-up included)
        self.drain_s = 0.0
        self.done_reason: str | None = None
        self.converged = False
        self._moved: list[str] = []  # which bracket end each refinement moved
        self._baseline_p50_ns: float | None = None  # warm median latency at the first rate
        self._faster_run = 0
        self._retry: float | None = None
        self._phase = "warmup"

    # -- protocol ------------------------------------------------------------------------------
    def start(self):
        w = self.cfg.warmup
        if w == "none" or w == 0:
            self.warmup_s = 0.0
            return self._begin(self.cfg.start_rate_rps, "bracket")
        return Offer(self.cfg.start_rate_rps)

    def on_interval(self, snap: IntervalSnapshot):
        self.elapsed_s += snap.dur_s
        if self._phase == "warmup":
            return self._warmup_interval(snap)
        step = self.steps[-1]
        step.intervals.append(snap)
        _tag(snap, len(self.steps) - 1, step.rate_rps)
        if self._recheck_warmup(snap):
            return self._begin(step.rate_rps, "bracket")
        verdict = self.judge.judge(step.intervals, step.rate_rps,
                                   full_length=step.phase in ("confirm", "retest"))
        if verdict is None and self.elapsed_s >= self.cfg.max_time_s:
            verdict = self.judge.judge(step.intervals, step.rate_rps, final=True)
        if verdict is None:
            return Offer(step.rate_rps)
        step.verdict = verdict
        return self._after_step(step)

    def on_drained(self, seconds: float = 0.0):
        self.drain_s += seconds
        self.elapsed_s += seconds
        return self._next_probe()

    # -- warm-up --------------------------------------------------------------------------------
    def _warmup_interval(self, snap: IntervalSnapshot):
        _tag(snap, None, self.cfg.start_rate_rps, warmup=True)
        self.warmup_series.append(snap)
        held_s = sum(s.dur_s for s in self.warmup_series)
        w = self.cfg.warmup
        if w != "auto":  # a fixed hold
            if held_s + 1e-9 >= float(w):
                self.warmup_s = held_s
                return self._begin(self.cfg.start_rate_rps, "bracket")
            return Offer(self.cfg.start_rate_rps)
        medians = [s.latency.values_at((50.0,))[0] if s.latency.total else np.nan
                   for s in self.warmup_series]
        d = is_warm(medians)
        if d is not None:
            # Steady from interval d: those intervals already measure the first rate warm.
            self.warmup_s = sum(s.dur_s for s in self.warmup_series[:d])
            self._baseline_p50_ns = float(np.nanmedian(medians[d:]))
            self._phase = "bracket"
            step = Step(self.cfg.start_rate_rps, "bracket", list(self.warmup_series[d:]))
            self.steps.append(step)
            for s in step.intervals:
                _tag(s, len(self.steps) - 1, step.rate_rps)
            verdict = self.judge.judge(step.intervals, step.rate_rps)
            if verdict is None:
                return Offer(step.rate_rps)
            step.verdict = verdict
            return self._after_step(step)
        if held_s >= min(self.cfg.max_warmup_s, self.cfg.max_time_s / 2):
            self.warmup_s = held_s
            self.warmup_note = (f"no steady state found in the first {held_s:.0f} s at "
                                f"{self.cfg.start_rate_rps:g} rps; searching anyway")
            return self._begin(self.cfg.start_rate_rps, "bracket")
        return Offer(self.cfg.start_rate_rps)

    def _recheck_warmup(self, snap: IntervalSnapshot) -> bool:
        """A slow plateau looks steady too. If the median latency later falls well below the
        warm level seen at the first (lowest) rate, for 3 intervals running, the server was
        still warming: every verdict so far is discarded and the search restarts from here."""
        if self.cfg.warmup != "auto" or not self._baseline_p50_ns or not snap.latency.total:
            return False
        p50 = snap.latency.values_at((50.0,))[0]
        self._faster_run = self._faster_run + 1 if p50 < 0.6 * self._baseline_p50_ns else 0
        if self._faster_run < 3:
            return False
        self._faster_run = 0
        self.warmup_s = self.elapsed_s - 3 * self.cfg.interval_s
        self.warmup_note = (f"the server got faster after {self.warmup_s:.0f} s: steps before "
                            "that were discarded as warm-up")
        self._baseline_p50_ns = float(p50)
        for s in self.steps:
            s.discarded = True
            for snap in s.intervals:
                snap.warmup = True
            if s.verdict is None:
                s.verdict = Verdict("unsure", "cut short: warm-up found", 0.0)
        self.lo = self.hi = self.m_lo = self.m_hi = None
        self.client_ceiling = None
        self._moved = []
        return True

    # -- steps ----------------------------------------------------------------------------------
    def _begin(self, rate: float, phase: str):
        self._phase = phase
        self.steps.append(Step(rate, phase))
        return Offer(rate)

    def _after_step(self, step: Step):
        v = step.verdict
        rate = step.rate_rps
        if v.abort:
            return self._finish(f"stopped: {v.why}", converged=False)
        if step.phase == "confirm" and v.verdict == "unsure":
            # Neither side of the bound by more than the noise: the earlier pass stands.
            self._moved.append("lo")
            return self._next_probe()
        if step.phase == "confirm" and v.verdict != "pass":
            # The answer did not hold up: fall back to the best pass below it and go on.
            below = [s.rate_rps for s in self.steps if not s.discarded
                     and s.verdict and s.verdict.verdict == "pass" and s.rate_rps < rate]
            self.hi, self.m_hi = rate, max(v.margin, 0.02)
            self.lo = max(below) if below else None
            self.m_lo = None
            self._moved.append("hi")
            return Drain()
        if step.phase == "retest" and v.verdict == "pass":
            # The marginal fail did not hold up: the boundary lies above it, below the next
            # failure seen higher up (if any).
            above = [s for s in self.steps if not s.discarded and s.verdict and s.rate_rps > rate
                     and s.verdict.verdict in ("fail", "unsure")]
            nxt = min(above, key=lambda s: s.rate_rps) if above else None
            self.lo, self.m_lo = rate, v.margin
            self.hi = nxt.rate_rps if nxt else None
            self.m_hi = max(nxt.verdict.margin, 0.02) if nxt else None
            self._moved.append("lo")
            return self._next_probe()
        if v.verdict == "pass":
            if self.lo is None or rate > self.lo:
                self.lo, self.m_lo = rate, v.margin
            elif rate == self.lo:
                self.m_lo = _ewma(self.m_lo, v.margin)
            self._moved.append("lo")
        elif v.verdict == "invalid":
            # The client, not the server, fell behind. Once may be a hiccup of a shared
            # machine: retry the rate; twice, and nothing above it is testable.
            tries = sum(1 for s in self.steps if s.rate_rps == rate and s.verdict
                        and s.verdict.verdict == "invalid" and not s.discarded)
            if tries < 2:
                self._retry = rate
                return Drain()
            self.client_ceiling = rate if self.client_ceiling is None else min(
                self.client_ceiling, rate)
        elif v.verdict == "unsure" and v.starved and self.hi is None:
            # Too few samples to judge, all pointing to a pass: a higher rate gives more.
            self._moved.append("starved")
        else:  # fail or unsure: conservative, the rate is not verified
            if self.hi is None or rate < self.hi:
                self.hi, self.m_hi = rate, max(v.margin, 0.02)
            elif rate == self.hi:
                self.m_hi = _ewma(self.m_hi, max(v.margin, 0.02))
            self._moved.append("hi")
        if v.verdict != "pass":
            return Drain()
        return self._next_probe()

    def _next_probe(self):
        cfg = self.cfg
        lo, hi = self.lo, self.hi
        boundary = self._boundary() if self._retry is None else None
        if boundary is not None and boundary[1] is None:
            # Settled by the step just judged: that is convergence even when it was the
            # budget's last step.
            return self._finish(boundary[0], converged=True)
        if len(self.steps) >= cfg.max_steps:
            return self._finish("step budget spent (--max-steps)", converged=False)
        if self.elapsed_s >= cfg.max_time_s:
            return self._finish("time budget spent (--max-time)", converged=False)
        ceiling = cfg.max_rate_rps
        if self.client_ceiling is not None:
            ceiling = min(ceiling, self.client_ceiling * 0.99)
        if self._retry is not None:
            rate, self._retry = self._retry, None
            return self._begin(rate, self.steps[-1].phase)
        if boundary is not None:
            return self._begin(*boundary[1])
        if hi is None:
            last = self.steps[-1]
            if last.verdict.verdict == "invalid":
                if lo is not None and ceiling <= lo * (1 + cfg.tolerance):
                    return self._finish(
                        "client limited: the client could not offer more than "
                        f"{self.client_ceiling:g} rps on time; use --batch-window or a faster "
                        "host", converged=False)
                rate = (lo + ceiling) / 2 if lo is not None else ceiling * 0.5
                return self._begin(rate, "bracket")
            if lo is not None and lo >= ceiling:
                who = ("the client's" if self.client_ceiling is not None
                       and ceiling < cfg.max_rate_rps else "--max-rate")
                return self._finish(f"passes at the rate ceiling ({ceiling:g} rps, {who})",
                                    converged=False)
            base = lo if lo is not None else last.rate_rps
            rate = min(ceiling, base * self._growth(self.m_lo if lo is not None else None))
            return self._begin(rate, "bracket")
        if hi > ceiling:
            # The client cannot offer more than its ceiling: search below it only.
            if lo is not None and ceiling <= lo * (1 + cfg.tolerance):
                return self._finish(
                    "client limited: the client could not offer more than "
                    f"{self.client_ceiling:g} rps on time; use --batch-window or a faster host",
                    converged=False)
            hi = ceiling
        if lo is None:
            # Even the first rate failed: step down, faster the further it was over.
            rate = hi / self._growth(self.m_hi)
            if rate < 1.0:
                return self._finish("fails even at 1 rps", converged=False)
            return self._begin(rate, "bracket")
        return self._begin(self._secant(lo, hi), "refine")

    def _growth(self, margin: float | None) -> float:
        """Multiplicative step from a log margin: the full grow_max far from the bound,
        dampened to ~1.1x as the margin approaches zero."""
        g = self.cfg.grow_max
        if margin is None:
            return g
        return 1.0 + (g - 1.0) * min(1.0, max(0.2, abs(margin) / 0.7))

    def _secant(self, lo: float, hi: float) -> float:
        width = hi - lo
        rate = (lo + hi) / 2
        m_lo, m_hi = self.m_lo, self.m_hi
        stalled = len(self._moved) >= 2 and self._moved[-1] == self._moved[-2]
        if (not stalled and m_lo is not None and m_hi is not None and m_lo < 0 < m_hi):
            rate = lo + width * (-m_lo) / (m_hi - m_lo)
        # Safeguard: never hug an end of the bracket.
        return min(max(rate, lo + 0.2 * width), hi - 0.2 * width)

    def _boundary(self):
        """(why, None) once the search has converged; (why, (rate, phase)) when the bracket is
        tight but one more look is due there; None while it is not tight yet.

        Look twice near the boundary: near capacity slow requests come in bursts, so a single
        step can pass or fail by luck. A marginal fail at hi is re-tested once; the answer is
        confirmed once with a full-length step.
        """
        lo, hi, tol = self.lo, self.hi, self.cfg.tolerance
        if hi is None or lo is None:
            return None
        narrow = (hi - lo) <= tol * lo
        if not narrow and not self._estimate_stable():
            return None
        why = f"bracket within {tol:.0%}" if narrow else "estimate stopped moving"
        if self._marginal_fail(hi):
            return why, (hi, "retest")
        if not self._confirmed(lo):
            return why, (lo, "confirm")
        return why, None

    def _marginal_fail(self, rate: float) -> bool:
        """hi failed only just (observed under 1.2x the bound) and was not re-tested yet."""
        at = [s for s in self.steps if s.rate_rps == rate and not s.discarded and s.verdict]
        if len(at) != 1 or at[0].phase == "retest":
            return False
        v = at[0].verdict
        return v.verdict in ("fail", "unsure") and v.margin < math.log(1.2) and not v.decisive

    def _confirmed(self, rate: float) -> bool:
        """Passed at this rate twice, or a confirmation step there did not fail."""
        steps = [s for s in self.steps if s.rate_rps == rate and not s.discarded and s.verdict]
        passes = [s for s in steps if s.verdict.verdict == "pass"]
        return len(passes) >= 2 or any(
            s.phase == "confirm" and s.verdict.verdict in ("pass", "unsure") for s in steps)

    def _estimate_stable(self) -> bool:
        refine = [s for s in self.steps
                  if s.phase == "refine" and s.verdict is not None and not s.discarded]
        if len(refine) < 3:
            return False
        passes = [s.rate_rps for s in refine[-3:] if s.verdict.verdict == "pass"]
        last = refine[-3:]
        spread = (max(s.rate_rps for s in last) - min(s.rate_rps for s in last))
        return bool(passes) and spread <= self.cfg.tolerance * self.lo and \
            (self.hi - self.lo) <= 2 * self.cfg.tolerance * self.lo

    def interrupt(self, reason: str = "interrupted"):
        """End the search from outside (Ctrl-C, a stop event): not converged. Returns Done."""
        return self._finish(reason, converged=False)

    def _finish(self, reason: str, converged: bool):
        self._phase = "done"
        self.done_reason = reason
        self.converged = converged
        return Done()

    # -- result ---------------------------------------------------------------------------------
    def result(self) -> dict:
        """The search's outcome: the `--out` JSON contract (docs/search.md)."""
        return search_result(
            capacity_rps=self.lo, converged=self.converged,
            reason=self.done_reason or "not finished", slo=self.cfg.slo.to_dict(),
            bracket=[self.lo, self.hi], warmup_s=self.warmup_s, warmup_note=self.warmup_note,
            load_s=self.elapsed_s, drain_s=self.drain_s,
            client_ceiling_rps=self.client_ceiling, config=self.cfg.to_dict(),
            steps=[s.to_dict() for s in self.steps if s.verdict is not None])


def _tag(snap: IntervalSnapshot, step: int | None, rate_rps: float, warmup: bool = False):
    """The search fields of a snapshot, set here only: the policy alone knows which step an
    interval belongs to, at which rate, and whether it was warm-up."""
    snap.step, snap.rate_rps, snap.warmup = step, rate_rps, warmup


def _ewma(old: float | None, new: float, alpha: float = 0.5) -> float:
    return new if old is None or not math.isfinite(old) else alpha * new + (1 - alpha) * old


def drive(policy: SearchPolicy, engine, max_intervals: int = 100_000) -> dict:
    """Run a policy to the end against a synchronous engine in virtual time.

    engine: anything with interval(rate_rps) -> IntervalSnapshot and drain() -> seconds, such
    as crestline.search.sim.SimEngine. Returns policy.result().
    """
    action = policy.start()
    for _ in range(max_intervals):
        if isinstance(action, Done):
            break
        if isinstance(action, Offer):
            action = policy.on_interval(engine.interval(action.rate_rps))
        else:
            action = policy.on_drained(engine.drain())
    return policy.result()
