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
from crestline.measure.result import CLASS_FAMILIES, IntervalSnapshot, add_classes
from crestline.measure.stream import class_stream_ms, stream_of
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
    max_schedule_lag_p99_ms: float = 1.0  # flags late intervals only when no latency bound
    arrival: str = "poisson"        # the arrival process the capacity holds for (reported)
    workers: int = 1                # client processes: a saturated client's CPU is this many s/s
    batch_window_ms: float = 0.0    # slots delayed on purpose: schedule lag tolerated on top

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
    cut_short: bool = False  # judged early because the time budget ran out
    p50_ns: float | None = None  # median of its interval medians, once asked for

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
            # token streams: TTFT/ITL/TPOT/e2e, tokens/s and goodput at this rate
            **stream_of(measured, sum(s.dur_s for s in measured)),
            # with a trace: which requests were slow at this rate
            **{family: {name: {"completed": h.total, "latency_ms": dict(zip(
                ("p50", "p99"), (v / 1e6 for v in h.capped_values_at((50.0, 99.0))),
                strict=True)), **class_stream_ms(classes, family, name, ("p50", "p99"))}
                for name, h in sorted(hists.items(), key=lambda kv: -kv[1].total)}
               for family, hists in classes.items() if family in CLASS_FAMILIES},
            "why": (DISCARDED_WHY if self.discarded else "") + (v.why if v else ""),
        }


class SearchPolicy:
    """Bracket, then refine with a safeguarded secant on smoothed SLO margins."""

    def __init__(self, config: SearchConfig):
        self.cfg = config
        self.judge = StepJudge(config.slo, config.interval_s, config.settle_intervals,
                               config.step_s, config.max_step_s,
                               config.max_schedule_lag_p99_ms, config.workers,
                               config.batch_window_ms)
        self.steps: list[Step] = []
        self.warmup_series: list[IntervalSnapshot] = []
        self.warmup_s: float | None = None
        self.warmup_note = ""
        # Set once two steps contradict a fixed server (a higher rate read clearly faster):
        # from then on a failure stands and the capacity stays below the lowest one.
        self.drift_note = ""
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
        self._baseline_rps = 0.0  # the rate that median was measured at
        self._faster_run = 0
        self._retry: float | None = None
        self._phase = "warmup"
        # The rate held for warm-up: the start rate, or lower after an overloaded start.
        self._hold_rps = config.start_rate_rps
        # Completions per second of a step that overloaded the server: its throughput. The
        # utilisation it implies sets how long steps near capacity run (judge).
        self.saturation_rps: float | None = None

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
        sat = self._saturation()
        verdict = self.judge.judge(step.intervals, step.rate_rps,
                                   full_length=step.phase in ("confirm", "retest"),
                                   saturation_rps=sat)
        if verdict is None and self.elapsed_s >= self.cfg.max_time_s:
            verdict = self.judge.judge(step.intervals, step.rate_rps, final=True,
                                       saturation_rps=sat)
            # Short of its full length: a confirmation past it was only looking longer for a
            # surer verdict, and the one it has now still confirms.
            measured_s = sum(s.dur_s for s in step.intervals[self.judge.settle:])
            step.cut_short = measured_s < self.judge.max_step_s - 1e-9
        if verdict is None:
            return Offer(step.rate_rps)
        step.verdict = verdict
        return self._after_step(step)

    def on_drained(self, seconds: float = 0.0):
        self.drain_s += seconds
        self.elapsed_s += seconds
        if self._phase == "warmup":
            # Backing off from an overloaded start: hold the lower rate from an idle server,
            # so that no warm-up verdict is taken from the overload's recovery.
            if len(self.steps) >= self.cfg.max_steps:
                return self._finish("step budget spent (--max-steps)", converged=False)
            if self.elapsed_s >= self.cfg.max_time_s:
                return self._finish("time budget spent (--max-time)", converged=False)
            return Offer(self._hold_rps)
        return self._next_probe()

    # -- warm-up --------------------------------------------------------------------------------
    def _warmup_interval(self, snap: IntervalSnapshot):
        rate = self._hold_rps
        _tag(snap, None, rate, warmup=True)
        self.warmup_series.append(snap)
        over = self.judge.overloaded(self.warmup_series)
        if over is not None:
            return self._overloaded_start(rate, *over)
        held_s = sum(s.dur_s for s in self.warmup_series)
        w = self.cfg.warmup
        if w != "auto":  # a fixed hold
            if held_s + 1e-9 >= float(w):
                self.warmup_s = held_s
                if self.steps:  # overloaded inside the hold: the server was declared cold
                    self._discard_cold_overload()
                return self._begin(rate, "bracket")
            return Offer(rate)
        medians = [_p50_ns(s) for s in self.warmup_series]
        d = is_warm(medians)
        if d is not None:
            # Steady from interval d: those intervals already measure the first rate warm.
            self.warmup_s = sum(s.dur_s for s in self.warmup_series[:d])
            self._baseline_p50_ns = float(np.nanmedian(medians[d:]))
            self._baseline_rps = rate
            if (d > 0 and self.steps
                    and np.nanmedian(medians[:d]) > 1.25 * self._baseline_p50_ns):
                # The held rate still warmed up (slower before d, not merely a queue filling
                # from idle) after an overloaded start: that overload may have been the cold
                # server's, so it is no evidence about the warm one.
                self._discard_cold_overload()
                self.warmup_s = self.elapsed_s - sum(s.dur_s for s in self.warmup_series[d:])
            self._phase = "bracket"
            step = Step(rate, "bracket", list(self.warmup_series[d:]))
            self.steps.append(step)
            for s in step.intervals:
                _tag(s, len(self.steps) - 1, step.rate_rps)
            verdict = self.judge.judge(step.intervals, step.rate_rps,
                                       saturation_rps=self.saturation_rps)
            if verdict is None:
                return Offer(step.rate_rps)
            step.verdict = verdict
            return self._after_step(step)
        if held_s >= min(self.cfg.max_warmup_s, self.cfg.max_time_s / 2):
            self.warmup_s = held_s
            self.warmup_note = (f"no steady state found in the first {held_s:.0f} s at "
                                f"{rate:g} rps; searching anyway")
            return self._begin(rate, "bracket")
        return Offer(rate)

    def _overloaded_start(self, rate: float, why: str, achieved_rps: float):
        """The start rate is above capacity: that is a failed step, not warm-up. Record it,
        drain, and hold a rate below what the server managed to complete."""
        step = Step(rate, "bracket", list(self.warmup_series))
        self.steps.append(step)
        for s in step.intervals:
            _tag(s, len(self.steps) - 1, rate)
        step.verdict = Verdict("fail", why, 1.0, list(step.intervals), decisive=True)
        self.warmup_series = []
        self.hi, self.m_hi = rate, 1.0
        self._moved.append("hi")
        self.saturation_rps = max(self.saturation_rps or 0.0, achieved_rps)
        self._hold_rps = max(1.0, min(rate / self.cfg.grow_max, 0.8 * achieved_rps))
        return Drain()

    def _discard_cold_overload(self) -> None:
        """Set aside the failed steps of an overloaded start, taken while the server was
        still warming up: the bracket and the throughput they gave are forgotten."""
        for st in self.steps:
            st.discarded = True
            for snap in st.intervals:
                snap.warmup = True
        self.hi = self.m_hi = None
        self.saturation_rps = None
        self._moved = []

    def _recheck_warmup(self, snap: IntervalSnapshot) -> bool:
        """A slow plateau looks steady too. If the median latency later falls well below what
        it was at the same rate or a lower one (in an earlier step, or earlier in this one),
        for 3 intervals running, the server was still warming: every verdict so far is
        discarded and the search restarts from here.

        Same or lower only: a fixed server is never faster under more load, so that is a
        server that changed. A lower rate than any before meets less queue, and its lower
        median is no sign of one that was still cold (after a start near capacity, say)."""
        if self.cfg.warmup != "auto" or not self._baseline_p50_ns or not snap.latency.total:
            return False
        step = self.steps[-1]
        ref = self._reference_p50_ns(step.rate_rps)
        # ... and this step's own earlier intervals: the same rate, before the run in question
        before = [m for m in map(self.judge.p50_ns, step.intervals[self.judge.settle:-3]) if m]
        if len(before) >= 3:
            ref = min(ref, float(np.median(before)))
        p50 = self.judge.p50_ns(snap)
        self._faster_run = self._faster_run + 1 if p50 < 0.6 * ref < math.inf else 0
        if self._faster_run < 3:
            return False
        self._faster_run = 0
        self.warmup_s = self.elapsed_s - 3 * self.cfg.interval_s
        self.warmup_note = (f"the server got faster after {self.warmup_s:.0f} s: steps before "
                            "that were discarded as warm-up")
        self._baseline_p50_ns = float(p50)
        self._baseline_rps = step.rate_rps
        for s in self.steps:
            s.discarded = True
            for snap in s.intervals:
                snap.warmup = True
            if s.verdict is None:
                s.verdict = Verdict("unsure", "cut short: warm-up found", 0.0)
        self.lo = self.hi = self.m_lo = self.m_hi = None
        self.client_ceiling = None
        self.saturation_rps = None
        self._moved = []
        return True

    def _reference_p50_ns(self, rate_rps: float) -> float:
        """The lowest median seen so far at rate_rps or below: the warm-up's, and each judged
        step's (the median of its interval medians); inf when there is none."""
        refs = [self._baseline_p50_ns] if self._baseline_rps <= rate_rps else []
        for st in self.steps[:-1]:
            if st.discarded or st.verdict is None or st.rate_rps > rate_rps:
                continue
            if st.p50_ns is None:
                got = [m for m in map(_p50_ns, st.verdict.measured) if m == m]
                st.p50_ns = float(np.median(got)) if got else math.inf
            refs.append(st.p50_ns)
        return min(refs, default=math.inf)

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
        self._note_saturation(step)
        if step.cut_short and v.verdict == "unsure":
            # The budget ended the step before it could say anything: it is no evidence
            # either way, so the bracket stays as it was (a rate that passed stays lo).
            return self._next_probe()
        if not self.drift_note:
            self._check_drift(step)
        if self.drift_note and (v.verdict == "pass" or _against(step)):
            self._pessimistic_bracket()
            self._moved.append("lo" if v.verdict == "pass" else "hi")
            return self._next_probe() if v.verdict == "pass" else Drain()
        if step.phase == "confirm" and v.verdict in ("fail", "unsure"):
            # The answer did not hold up at full length: failed, or still within the noise of
            # the bound after the longest look. A capacity one launches on must have passed,
            # so fall back to the best pass below it and confirm there.
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

    def _check_drift(self, step: Step) -> None:
        """A fixed server is never faster under more load. If this step and an earlier one,
        at least three tolerances apart in rate, read so differently that the one at the
        higher rate is clearly the faster, beyond both steps' errors (over intervals) and
        by at least 1.25x in the bound's terms, the target changed speed between them
        (drifting, load on its host, a warm-up the median did not show). A re-test then
        measures a different server, and a capacity read in a fast spell does not hold in a
        slow one (docs/search.md)."""
        if not self._comparable(step):
            return
        for other in self.steps[:-1]:
            if not self._comparable(other):
                continue
            low, high = sorted((other, step), key=lambda s: s.rate_rps)
            if high.rate_rps < low.rate_rps * (1 + _DRIFT_APART * self.cfg.tolerance):
                continue  # near the knee, neighbouring steps differ by luck (slow queues)
            gap = low.verdict.margin - high.verdict.margin
            se = math.hypot(low.verdict.margin_se, high.verdict.margin_se)
            if gap >= max(_DRIFT_Z * se, _DRIFT_MIN):
                self.drift_note = (
                    f"the target changed speed during the search: {high.rate_rps:.4g} rps "
                    f"read {_head(high.verdict.why)}, {low.rate_rps:.4g} rps "
                    f"{_head(low.verdict.why)}; a failure stands (no re-test) and the "
                    "capacity stays below the lowest rate that failed")
                return

    def _comparable(self, step: Step) -> bool:
        """A step whose margin is known with an error, over at least the minimum step."""
        v = step.verdict
        if step.discarded or v is None or v.verdict not in ("pass", "fail", "unsure"):
            return False
        if v.starved or v.margin_se is None or not math.isfinite(v.margin_se):
            return False
        return sum(s.dur_s for s in v.measured) + 1e-9 >= self.judge.step_s

    def _pessimistic_bracket(self) -> None:
        """Once the target drifts: hi is the lowest rate that ever failed (or stayed unsure),
        lo the best pass below it. A later pass never outweighs an earlier failure."""
        judged = [s for s in self.steps if not s.discarded and s.verdict]
        bad = [s for s in judged if _against(s)]
        if bad:
            worst = min(bad, key=lambda s: s.rate_rps)
            self.hi, self.m_hi = worst.rate_rps, max(worst.verdict.margin, 0.02)
        good = [s for s in judged if s.verdict.verdict == "pass"
                and (self.hi is None or s.rate_rps < self.hi)]
        best = max(good, key=lambda s: s.rate_rps) if good else None
        self.lo = best.rate_rps if best else None
        self.m_lo = best.verdict.margin if best else None

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
            rate, phase = boundary[1]
            if (phase == "retest" and not self._confirmed(lo)
                    and self._budget_nearly_spent()):
                # A retest only moves lo up, to a rate that would need confirming in turn:
                # with the budget's last step, confirm what passed instead.
                return self._begin(lo, "confirm")
            return self._begin(rate, phase)
        if lo is not None and not self._confirmed(lo) and self._budget_nearly_spent():
            # A capacity is reported only once confirmed: spend what is left on that.
            return self._begin(lo, "confirm")
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

    def _budget_nearly_spent(self) -> bool:
        """One step left, or less load time than the longest full-length step may take."""
        cfg = self.cfg
        return (cfg.max_steps - len(self.steps) <= 1
                or cfg.max_time_s - self.elapsed_s
                < 3 * cfg.max_step_s + (cfg.settle_intervals + 1) * cfg.interval_s)

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
        if self.drift_note:
            return False  # a drifting target: a re-test would measure a different server
        at = [s for s in self.steps if s.rate_rps == rate and not s.discarded and s.verdict]
        if len(at) != 1 or at[0].phase == "retest":
            return False
        v = at[0].verdict
        return v.verdict in ("fail", "unsure") and v.margin < math.log(1.2) and not v.decisive

    def _confirmed(self, rate: float) -> bool:
        """A confirmation passed at this rate."""
        return rate in self.confirmed_rates()

    def confirmed_rates(self) -> list[float]:
        """Rates at which a confirmation (a full-length step at lo) passed, not discarded and
        not cut short by the time budget. A retest that passed is not one: the same rate
        failed once before it."""
        return [s.rate_rps for s in self.steps if not s.discarded and not s.cut_short
                and s.verdict and s.phase == "confirm" and s.verdict.verdict == "pass"]

    def _saturation(self) -> float | None:
        """The server's throughput as far as known: measured in an overloaded step, else
        the lowest rate that failed decisively (far over: the queue was near saturation)."""
        if self.saturation_rps:
            return self.saturation_rps
        far = [s.rate_rps for s in self.steps if not s.discarded and s.verdict
               and s.verdict.verdict == "fail" and s.verdict.decisive]
        return min(far) if far else None

    def _note_saturation(self, step: Step) -> None:
        """A step whose completions fell well behind its arrivals ran the server flat out:
        its achieved rate is the server's throughput."""
        measured = step.verdict.measured
        sched = sum(s.scheduled for s in measured)
        done = sum(s.completed for s in measured)
        dur = sum(s.dur_s for s in measured)
        if sched and dur and done / sched < 0.97 and step.verdict.verdict == "fail":
            self.saturation_rps = max(self.saturation_rps or 0.0, done / dur)

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
    def capacity(self) -> float | None:
        """The reported capacity: lo once converged (confirmed by then); when a budget ran
        out first, the highest rate a full-length step confirmed, or None."""
        if self.converged or not _BUDGET_REASONS.intersection([self.done_reason]):
            return self.lo
        confirmed = [r for r in self.confirmed_rates()
                     if not self.drift_note or self.hi is None or r < self.hi]
        return max(confirmed) if confirmed else None

    def capacity_ci(self, cap: float | None) -> list | None:
        """[low, high] (rps), about 95%, for where the SLO's boundary lies (docs/search.md).

        The secant through the confirming step's margin at cap and the smoothed margin at hi
        gives the crossing rate and the margin's slope; the confirming step's margin error,
        taken over its intervals, turns into rps through that slope (1.96 standard errors).
        The high end never exceeds hi, a rate that failed; the low end never exceeds cap.
        """
        if cap is None:
            return None
        conf = [s for s in self.steps if s.rate_rps == cap and not s.discarded and s.verdict
                and s.verdict.verdict == "pass"]
        v = conf[-1].verdict if conf else None
        hi, m_hi = self.hi, self.m_hi
        if v is None or hi is None or m_hi is None or hi <= cap or m_hi <= v.margin:
            return [cap, hi]
        slope = (m_hi - v.margin) / (hi - cap)  # margin per rps
        cross = cap - v.margin / slope
        half = 1.96 * (v.margin_se or 0.0) / slope
        return [max(0.0, min(cap, cross - half)), max(cap, min(hi, cross + half))]

    def result(self) -> dict:
        """The search's outcome: the `--out` JSON contract (docs/search.md)."""
        cap = self.capacity()
        return search_result(
            capacity_rps=cap, capacity_ci_rps=self.capacity_ci(cap),
            arrival=self.cfg.arrival, converged=self.converged, drift_note=self.drift_note,
            reason=self.done_reason or "not finished", slo=self.cfg.slo.to_dict(),
            bracket=[self.lo, self.hi], warmup_s=self.warmup_s, warmup_note=self.warmup_note,
            load_s=self.elapsed_s, drain_s=self.drain_s,
            client_ceiling_rps=self.client_ceiling, config=self.cfg.to_dict(),
            steps=[s.to_dict() for s in self.steps if s.verdict is not None])


# Two steps contradict a fixed server when the higher rate's margin is lower by this many
# standard errors of the difference, and by at least this much (log 1.25: 1.25x the bound).
_DRIFT_Z = 3.0
_DRIFT_MIN = math.log(1.25)
# ... and only when their rates are this many tolerances apart: steps close together near the
# knee read a slow queue's luck (1.3x apart at the same rate on a fixed M/D/4; 2x heavy-tailed).
_DRIFT_APART = 3

_BUDGET_REASONS = {"step budget spent (--max-steps)", "time budget spent (--max-time)"}


def _against(step: Step) -> bool:
    """A judged step that is evidence against its rate: a fail, or unsure for a reason other
    than too few samples or a budget that cut it short."""
    v = step.verdict
    return v.verdict == "fail" or (v.verdict == "unsure" and not v.starved
                                   and not step.cut_short)


def _head(why: str) -> str:
    """A verdict's figures without its notes: 'p99 29.2 ms vs 50 ms'."""
    return why.split(";")[0].split(" (")[0]


def _p50_ns(snap: IntervalSnapshot) -> float:
    return snap.latency.values_at((50.0,))[0] if snap.latency.total else np.nan


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
