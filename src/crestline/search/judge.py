"""The verdict on one search step: pass, fail, unsure, or invalid (the client fell behind).

Pure. A step is a run of intervals at one offered rate. Its first `settle` intervals are left
out (the queue adjusts to the new rate); the rest are "measured". A step passes only if it is
sustainable (completions keep up with arrivals, the backlog and latency do not trend up) and a
sequential test on the SLO exceedance count accepts every bound. Isolated bad intervals that
recover (a GC pause, one slow batch) are excused up to a budget; sustained trouble never is.

Values, bounds and their text come from the one SLO evaluator (crestline.slo); this module
adds only the sequential test, chosen by each bound's family (tail, rate, level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from crestline.measure.hdr import Hist, index_of
from crestline.measure.result import IntervalSnapshot
from crestline.slo.bound import LEVEL, RATE, TAIL, Bound, Pool, RateBound, TailBound, Term
from crestline.slo.parse import Slo
from crestline.telemetry.window import guard_trouble

# Wald's SPRT thresholds for 5% error each way: ln((1 - beta) / alpha).
_SPRT_A = math.log(0.95 / 0.05)
# Indifference zone around the allowed tail fraction q: H0 q0 = q * LOW, H1 q1 = q * HIGH.
_LOW, _HIGH = 0.7, 1.4
# A percentile verdict needs at least this many expected exceedances at the bound (500
# samples for p99, 5000 for p99.9).
_MIN_TAIL_SAMPLES = 5
# A step still undecided at its longest is judged on its point estimate: pass at most 0.9x the
# allowed tail fraction, fail at 1.1x or more, unsure in between.
_FINAL_PASS, _FINAL_FAIL = 0.9, 1.1
# ... and only once it holds this many expected exceedances (5000 samples for p99).
_POINT_TAIL_SAMPLES = 50
# A step may pass before its full length only with every percentile below 0.7x its bound.
_EARLY_PASS_MARGIN = math.log(0.7)


@dataclass
class Verdict:
    verdict: str  # "pass" | "fail" | "unsure" | "invalid"
    why: str
    margin: float  # log(observed / bound) of the worst SLO term: < 0 passes
    measured: list = field(default_factory=list)
    spikes: int = 0
    starved: bool = False  # unsure only for want of samples, while the estimate passes
    decisive: bool = False  # a clear fail (far over, queue growing): not worth a re-test
    abort: bool = False  # the GPU failed (an XID error): no later step can be trusted


def _exceed(h: Hist | None, bound_ns: int) -> int:
    """Samples above bound_ns (whole buckets above the bound's bucket)."""
    if h is None or h.total == 0:
        return 0
    i = int(index_of(np.array([bound_ns]))[0])
    return int(h.counts[i + 1:].sum())


class _IntervalFigures:
    """Per-interval figures, computed once: the judge re-reads every interval of a step at each
    new interval, on the event loop, so recomputing them would add loop pauses (send lag).

    Owned by one judge; keyed by the snapshot's identity (a snapshot is mutable, so not
    hashable), holding the snapshot so that its id cannot be reused while the entry lives.
    """

    def __init__(self):
        self._by_id: dict[int, tuple[IntervalSnapshot, dict]] = {}

    def keep_only(self, snaps: list[IntervalSnapshot]) -> None:
        """Forget intervals of earlier steps (the judge sees one step at a time)."""
        if len(self._by_id) > len(snaps):
            ids = {id(s) for s in snaps}
            self._by_id = {i: e for i, e in self._by_id.items() if i in ids}

    def _of(self, s: IntervalSnapshot) -> dict:
        entry = self._by_id.get(id(s))
        if entry is None or entry[0] is not s:
            entry = self._by_id[id(s)] = (s, {})
        return entry[1]

    def _get(self, s: IntervalSnapshot, key, compute):
        cache = self._of(s)
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    def p50_ns(self, s: IntervalSnapshot) -> int:
        return self._get(s, "p50", lambda: s.latency.values_at((50.0,))[0]
                         if s.latency.total else 0)

    def lag_p99_ns(self, s: IntervalSnapshot) -> int:
        h = s.hists["schedule_lag"]
        return self._get(s, "lag99", lambda: h.values_at((99.0,))[0] if h.total else 0)

    def exceed(self, s: IntervalSnapshot, hist_name: str, bound_ns: int) -> int:
        return self._get(s, ("exceed", hist_name, bound_ns),
                         lambda: _exceed(s.hists.get(hist_name), bound_ns))


def _total(s: IntervalSnapshot, hist_name: str) -> int:
    h = s.hists.get(hist_name)
    return h.total if h is not None else 0


def _theil_sen(y) -> float:
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n < 2:
        return 0.0
    i, j = np.triu_indices(n, 1)
    return float(np.median((y[j] - y[i]) / (j - i)))


def _llr(x: int, n: int, q0: float, q1: float) -> float:
    """Log likelihood ratio of H1 (rate q1) against H0 (rate q0) for x hits in n trials."""
    return x * math.log(q1 / q0) + (n - x) * math.log((1 - q1) / (1 - q0))


def _dispersion(xs, ns) -> float:
    """How much more the per-interval counts vary than binomial counts would (>= 1).

    Slow requests come in bursts (a queue), so exceedances are not independent; dividing the
    evidence by this factor keeps the sequential test honest.
    """
    xs, ns = np.asarray(xs, float), np.asarray(ns, float)
    if len(xs) < 3 or ns.sum() == 0:
        return 2.0
    q = xs.sum() / ns.sum()
    if q <= 0 or q >= 1:
        return 1.0
    expected = ns * q * (1 - q)
    return max(1.0, float(((xs - ns * q) ** 2).sum() / expected.sum()))


@dataclass
class _Step:
    """What every stage of one judgement reads: the measured intervals and how far along."""

    measured: list
    rate_rps: float
    final: bool
    mdur: float  # measured seconds

    @property
    def k(self) -> int:
        return len(self.measured)


@dataclass
class _Sustain:
    ratio: float  # completed / scheduled
    real_deficit: bool  # the shortfall is beyond the backlog's own noise
    problem: str | None  # why the step is not sustainable, or None


@dataclass
class _SloTerms:
    """The SLO terms' outcome on one step: clauses by outcome, the worst margin."""

    fails: list = field(default_factory=list)
    undecided: list = field(default_factory=list)
    whys: list = field(default_factory=list)
    margin: float = -3.0
    starved: int = 0  # undecided terms only for want of samples

    def widen(self, term: Term) -> None:
        if term.margin is not None:
            self.margin = max(self.margin, term.margin)


class StepJudge:
    def __init__(self, slo: Slo, interval_s: float, settle: int, step_s: float,
                 max_step_s: float, max_schedule_lag_p99_ms: float):
        self.slo = slo
        self.interval_s = interval_s
        self.settle = settle
        self.step_s = step_s
        self.max_step_s = max(max_step_s, step_s)
        # Client lateness adds to every latency-like figure, so it only spoils a verdict when
        # it is large next to the SLO: the bound is the larger of the client_ok bound and 10%
        # of the tightest percentile bound.
        self.tails = slo.tail_bounds()
        tightest_ms = min((b.bound_ms for b in self.tails), default=0.0)
        self.lag_bound_ns = int(max(max_schedule_lag_p99_ms, 0.1 * tightest_ms) * 1e6)
        self._hist_names = tuple(dict.fromkeys(b.hist_name for b in self.tails)) or ("latency",)
        self._figs = _IntervalFigures()

    def judge(self, intervals: list[IntervalSnapshot], rate_rps: float,
              final: bool = False, full_length: bool = False) -> Verdict | None:
        """The step's verdict, or None while it should go on.

        full_length: no verdict before max_step_s (a confirmation step).
        """
        self._figs.keep_only(intervals)
        guarded = self._gpu_guard(intervals)
        if guarded:
            return guarded
        measured = intervals[self.settle:]
        if not measured:
            return Verdict("unsure", "stopped before any measured interval", 0.0) if final else None
        step = _Step(measured, rate_rps, final, sum(s.dur_s for s in measured))
        step.final = final or self._at_full_length(step)
        if full_length and not step.final:
            return None
        late = [i for i, s in enumerate(measured) if self._figs.lag_p99_ns(s) > self.lag_bound_ns]
        if len(late) > max(1, step.k // 10):
            return Verdict("invalid", f"client fell behind its schedule in {len(late)} of "
                           f"{step.k} intervals (schedule lag p99 over bound)", 0.0, measured)
        spikes = self._spikes(measured)
        excused = spikes + [i for i in late if i not in spikes]
        pool = [s for i, s in enumerate(measured) if i not in excused] or measured
        sustain = self._sustainability(step)
        terms = self._slo_terms(step, pool)
        # A late interval is left out like a spike but is the client's doing, not the server's.
        n_spikes = len([i for i in spikes if i not in late])
        return self._decide(step, sustain, terms, excused, n_spikes, pool)

    # -- 0. the GPU guard -------------------------------------------------------------------
    def _gpu_guard(self, intervals: list[IntervalSnapshot]) -> Verdict | None:
        """Thermal throttling or an XID error ends the step at once (clocks were cut, or the
        device faulted, so latency here says nothing about the model)."""
        for s in intervals:
            trouble = guard_trouble(s.gpu)
            if trouble:
                xid = any(fig and fig.get("xid") for fig in s.gpu.values())
                return Verdict("fail", f"stopped by the GPU guard: {trouble}", 0.5,
                               intervals[self.settle:], decisive=True, abort=xid)
        return None

    def _at_full_length(self, step: _Step) -> bool:
        """A step runs to max_step_s, longer (up to 3x) while it lacks the samples for a point
        estimate of the tail to be worth deciding on: at low rates that takes a while."""
        enough = all(sum(_total(s, b.hist_name) for s in step.measured)
                     >= _POINT_TAIL_SAMPLES / b.tail for b in self.tails)
        return (step.mdur >= self.max_step_s - 1e-9 and enough) or (
            step.mdur >= 3 * self.max_step_s - 1e-9)

    # -- 2. spikes: isolated bad intervals that recover, tail only ----------------------------
    def _spikes(self, measured: list[IntervalSnapshot]) -> list[int]:
        """Positions of the measured intervals excused as spikes."""
        k = len(measured)
        p50s = np.array([self._figs.p50_ns(s) for s in measured], dtype=np.float64)
        typical_p50 = float(np.median(p50s)) if k else 0.0
        # One excused spike per step (one more per 30 s); a step that uses the excuse must run
        # twice the usual length, so a second episode (congestion recurs, a GC pause does not)
        # has time to show.
        budget = 1 + k // 30 if k >= 5 else 0
        excused: list[int] = []
        for i in range(k):
            if len(excused) >= budget:
                break
            # Excusable: a bad interval between clean ones, with the median unmoved (tail
            # only), in a step that is comfortably within the SLO without it. Near capacity
            # bad intervals cluster and neighbours are not clean, so none is excused there.
            clean_after = i + 1 < k and self._interval_clean(measured[i + 1])
            clean_before = i == 0 or self._interval_clean(measured[i - 1])
            tail_only = p50s[i] <= 1.5 * typical_p50 + 1e5
            if self._interval_bad(measured[i]) and clean_after and clean_before and tail_only:
                excused.append(i)
        if excused and not self._comfortable([s for i, s in enumerate(measured)
                                              if i not in excused], 0.2):
            return []
        return excused

    def _interval_clean(self, s: IntervalSnapshot) -> bool:
        return all(self._figs.exceed(s, b.hist_name, b.bound_ns) <= b.tail * _total(s, b.hist_name)
                   for b in self.tails)

    def _interval_bad(self, s: IntervalSnapshot) -> bool:
        for b in self.tails:
            x = self._figs.exceed(s, b.hist_name, b.bound_ns)
            if x >= 5 and x > 5 * b.tail * _total(s, b.hist_name):
                return True
        return False

    def _comfortable(self, intervals, share: float) -> bool:
        """Every bound's pooled exceedance is at most `share` of what the SLO allows."""
        return all(sum(self._figs.exceed(s, b.hist_name, b.bound_ns) for s in intervals)
                   <= share * b.tail * sum(_total(s, b.hist_name) for s in intervals)
                   for b in self.tails)

    # -- 3. sustainability over every measured interval --------------------------------------
    def _sustainability(self, step: _Step) -> _Sustain:
        measured, k = step.measured, step.k
        scheduled = sum(s.scheduled for s in measured)
        completed = sum(s.completed for s in measured)
        # Responses per arrival: a request that failed unanswered (timeout, reset, refused)
        # was not served either.
        ratio = completed / scheduled if scheduled else 1.0
        # At low rates a single request in flight at the cut moves the ratio by percents:
        # a shortfall counts only beyond what the backlog's own noise explains.
        deficit = scheduled - completed
        real_deficit = deficit > 3 * math.sqrt(np.mean([s.inflight for s in measured]) + 1) + 2
        q = [s.inflight for s in measured]
        arrivals_per_interval = max(step.rate_rps * self.interval_s, 1.0)
        growth = _theil_sen(q) / arrivals_per_interval if k >= 3 else 0.0
        backlog_up = (k >= 3 and growth > 0.01
                      and q[-1] - q[0] > 3 * math.sqrt(np.mean(q) + 1) + 2)
        p50s = np.array([self._figs.p50_ns(s) for s in measured], dtype=np.float64)
        half = k // 2
        p50_rising = (k >= 4 and np.median(p50s[half:]) > 1.25 * np.median(p50s[:half]) + 1e5
                      and growth > 0.005)
        problem = None
        if ratio < 0.99 and real_deficit and (k >= 3 or step.final):
            problem = f"achieved {ratio:.1%} of offered"
        elif backlog_up:
            problem = f"in-flight growing by {growth:.1%} of arrivals per interval"
        elif p50_rising:
            problem = "median latency rising within the step"
        return _Sustain(ratio, real_deficit, problem)

    # -- 4. the SLO terms ------------------------------------------------------------------------
    def _slo_terms(self, step: _Step, pool: list[IntervalSnapshot]) -> _SloTerms:
        """Every bound evaluated by crestline.slo, then tested by its family: percentiles on
        the pooled histograms (excused intervals left out), rates and levels over every
        measured interval."""
        stats = Pool.of_intervals(pool, self._hist_names, counted=step.measured)
        out = _SloTerms()
        tests = {TAIL: self._tail_term, RATE: self._rate_term, LEVEL: self._level_term}
        for b in self.slo.bounds:
            tests[b.family](b, b.evaluate(stats), stats, step, pool, out)
        out.margin = max(-3.0, min(3.0, out.margin))
        return out

    def _tail_term(self, b: TailBound, term: Term, stats: Pool, step: _Step,
                   pool: list, out: _SloTerms) -> None:
        """A percentile: Wald's SPRT on the exceedance count, corrected for bursts."""
        lat = stats.hist(b.hist_name)
        n, tail, bound_ns = lat.total, b.tail, b.bound_ns
        xs = [self._figs.exceed(s, b.hist_name, bound_ns) for s in pool]
        x = sum(xs)
        out.widen(term)
        llr = _llr(x, n, tail * _LOW, min(tail * _HIGH, 0.999)) / _dispersion(
            xs, [_total(s, b.hist_name) for s in pool])
        desc = term.versus
        point = f"{desc} (by the point estimate after {step.mdur:.0f} s)"
        # Near capacity slow requests come in bursts that can fill a whole interval, so
        # "far over" needs either several intervals or a median over the bound too.
        p50_ns = lat.values_at((50.0,))[0] if n else 0
        if n and x >= 30 and ((step.k >= 5 and x / n > 3 * tail)
                              or (x / n > 10 * tail and p50_ns > bound_ns)):
            out.fails.append(f"{desc} (far over)")
        elif llr >= _SPRT_A and step.k >= 3:
            out.fails.append(desc)
        elif llr <= -_SPRT_A and n >= _MIN_TAIL_SAMPLES / tail:
            out.whys.append(desc)
        elif step.final and n >= _MIN_TAIL_SAMPLES / tail and x <= _FINAL_PASS * tail * n:
            out.whys.append(point)
        elif step.final and n >= _MIN_TAIL_SAMPLES / tail and x >= _FINAL_FAIL * tail * n:
            out.fails.append(point)
        else:
            if n < _MIN_TAIL_SAMPLES / tail:
                out.starved += 1
                desc += f", {n} samples of {math.ceil(_MIN_TAIL_SAMPLES / tail)} needed"
            out.undecided.append(desc)

    def _rate_term(self, b: RateBound, term: Term, stats: Pool, step: _Step,
                   pool: list, out: _SloTerms) -> None:
        """A fraction of events: zero tolerance is all or nothing; otherwise the SPRT on the
        count (no dispersion correction), the rule of three, then the point estimate."""
        hits, trials = b.counts(stats)
        e_max = b.max_rate
        out.widen(term)
        desc = term.versus
        if e_max == 0:
            (out.fails if hits else out.whys).append(desc)
            return
        e = hits / trials if trials else 0.0
        llr = _llr(hits, max(trials, 1), e_max * _LOW, min(e_max * _HIGH, 0.999))
        # With no event at all, n >= 3 / e_max bounds the rate below e_max at 95% (the rule
        # of three).
        if (hits >= 30 and e > 3 * e_max) or (llr >= _SPRT_A and step.k >= 3):
            out.fails.append(desc)
        elif llr <= -_SPRT_A or (hits == 0 and trials >= 3 / e_max):
            out.whys.append(desc)
        elif step.final and trials >= _POINT_TAIL_SAMPLES / e_max / 10:
            (out.whys if e <= _FINAL_PASS * e_max else
             out.fails if e >= _FINAL_FAIL * e_max else out.undecided).append(
                f"{desc} (by the point estimate after {step.mdur:.0f} s)")
        else:
            if trials < 3 / e_max:
                out.starved += 1
            out.undecided.append(desc)

    def _level_term(self, b: Bound, term: Term, stats: Pool, step: _Step,
                    pool: list, out: _SloTerms) -> None:
        """A level, not a tail: three measured intervals settle it."""
        if term.value is None:
            return  # no figure: the run's warnings say why
        out.widen(term)
        (out.fails if not term.met and step.k >= 3 else out.whys).append(term.versus)

    # -- 5. deciding -------------------------------------------------------------------------
    def _decide(self, step: _Step, sustain: _Sustain, terms: _SloTerms, excused: list[int],
                spikes: int, pool: list[IntervalSnapshot]) -> Verdict | None:
        measured, k, margin = step.measured, step.k, terms.margin
        note = f"; {spikes} spike interval(s) excused" if spikes else ""
        if terms.fails:
            return Verdict("fail", "; ".join(terms.fails) + note, max(margin, 0.05), measured,
                           spikes, decisive=any("far over" in f for f in terms.fails))
        if sustain.ratio < 0.9 and sustain.real_deficit and k >= 2:
            return Verdict("fail", f"queue growing fast: achieved {sustain.ratio:.1%} of offered",
                           max(margin, 0.05), measured, spikes, decisive=True)
        if sustain.problem and (step.mdur >= self.step_s - 1e-9 or step.final or (
                sustain.ratio < 0.97 and sustain.real_deficit)):
            return Verdict("fail", f"not sustainable: {sustain.problem}", max(margin, 0.05),
                           measured, spikes, decisive=True)
        all_pass = not terms.undecided and not sustain.problem
        # An early pass needs a wide margin: near capacity a few calm seconds prove little.
        comfortable = not excused and margin <= _EARLY_PASS_MARGIN and self._comfortable(pool, 0.5)
        needed_s = 2 * self.step_s if excused and spikes else self.step_s
        if all_pass and (step.mdur >= needed_s - 1e-9
                         or (k >= 3 and comfortable and step.mdur >= self.step_s / 2)):
            return Verdict("pass", "; ".join(terms.whys) + note, min(margin, -0.01), measured,
                           spikes)
        if step.final:
            why = "; ".join(terms.undecided or [sustain.problem or "undecided"])
            starved = (terms.starved == len(terms.undecided) and not sustain.problem
                       and margin < 0)
            return Verdict("unsure", f"undecided after {step.mdur:.0f} s: {why}", margin,
                           measured, spikes, starved)
        return None
