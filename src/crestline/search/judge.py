"""The verdict on one search step: pass, fail, unsure, or invalid (the client fell behind).

Pure. A step is a run of intervals at one offered rate. Its first `settle` intervals are left
out (the queue adjusts to the new rate); the rest are "measured". A step passes only if it is
sustainable (completions keep up with arrivals, the backlog and latency do not trend up), steady
(no significant upward drift of latency or in-flight over its intervals), long enough for the
queue to have relaxed many times, and every tail bound's exceedance fraction is below the bound
with 95% confidence, its error estimated over intervals (bursts and autocorrelation count), not
over requests. Isolated bad intervals that recover (a GC pause, one slow batch) are excused up
to a budget; intervals where the client itself ran late are left out (the client's hiccup);
sustained trouble never is.

Values, bounds and their text come from the one SLO evaluator (crestline.slo); this module
adds only the statistical test, chosen by each bound's family: a confidence bound over
intervals for a tail, a sequential test for a rate, a plain comparison for a level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from crestline.measure.hdr import Hist, index_of
from crestline.measure.result import IntervalSnapshot
from crestline.search.steady import (
    Z_ONE_SIDED,
    autocorr_time,
    drifting_up,
    relaxation_s,
    tail_fraction,
    theil_sen,
)
from crestline.slo.bound import LEVEL, RATE, TAIL, Bound, Pool, RateBound, TailBound, Term
from crestline.slo.parse import Slo
from crestline.telemetry.window import guard_trouble

# Wald's SPRT thresholds for 5% error each way: ln((1 - beta) / alpha). Used for the error
# rate only: errors are counted per request and have no queue behind them.
_SPRT_A = math.log(0.95 / 0.05)
# Indifference zone around the allowed rate e: H0 e0 = e * LOW, H1 e1 = e * HIGH.
_LOW, _HIGH = 0.7, 1.4
# The client's CPU seconds per second at which it counts as saturated, per worker process.
_CPU_SATURATED = 0.95
# A step near capacity must span this many queue relaxation times, and this many
# autocorrelation times of its own latency series (in intervals), before it may pass.
_RELAX_SPAN = 50
_TAU_SPAN = 6
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
    margin_se: float | None = None  # standard error of the margin, over intervals
    hiccups: int = 0  # intervals left out as the client's own lateness
    starved: bool = False  # unsure only for want of samples, while the estimate passes
    decisive: bool = False  # a clear fail (far over, queue growing): not worth a re-test
    abort: bool = False  # the GPU failed (an XID error): no later step can be trusted


def _exceed(h: Hist | None, bound_ns: int) -> int:
    """Samples above bound_ns (whole buckets above the bound's bucket)."""
    if h is None or h.total == 0:
        return 0
    i = int(index_of(np.array([bound_ns]))[0])
    idx, vals = h.nonzero()
    return int(vals[idx > i].sum())


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

    def pct_ns(self, s: IntervalSnapshot, hist_name: str, pct: float) -> int:
        h = s.hists.get(hist_name)
        return self._get(s, ("pct", hist_name, pct), lambda: h.capped_values_at((pct,))[0]
                         if h is not None and h.total else 0)


def _total(s: IntervalSnapshot, hist_name: str) -> int:
    h = s.hists.get(hist_name)
    return h.total if h is not None else 0


def _llr(x: int, n: int, q0: float, q1: float) -> float:
    """Log likelihood ratio of H1 (rate q1) against H0 (rate q0) for x hits in n trials."""
    return x * math.log(q1 / q0) + (n - x) * math.log((1 - q1) / (1 - q0))


@dataclass
class _Step:
    """What every stage of one judgement reads: the measured intervals and how far along."""

    measured: list
    rate_rps: float
    final: bool
    mdur: float  # measured seconds
    needed_s: float = 0.0  # measured time a pass needs (the relaxation rule)
    full_length: bool = False  # a confirmation or retest: no verdict before max_step_s
    extend: bool = False  # undecided at full length: go on rather than say unsure
    last_look: bool = False  # a confirmation at twice its length: the point estimate decides

    @property
    def k(self) -> int:
        return len(self.measured)


@dataclass
class _Sustain:
    ratio: float  # completed / scheduled
    real_deficit: bool  # the shortfall is beyond the backlog's own noise
    problem: str | None  # why the step is not sustainable, or None
    drift: str | None = None  # not steady yet: blocks a pass, fails nothing by itself


@dataclass
class _SloTerms:
    """The SLO terms' outcome on one step: clauses by outcome, the worst margin."""

    fails: list = field(default_factory=list)
    undecided: list = field(default_factory=list)
    whys: list = field(default_factory=list)
    margin: float = -3.0
    margin_se: float | None = None
    starved: int = 0  # undecided terms only for want of samples
    failed_tails: list = field(default_factory=list)  # (bound, observed ms) of failed tails
    tau: float = 1.0  # the slowest autocorrelation time of the tail series, in intervals

    def widen(self, term: Term, se: float | None = None) -> None:
        if term.margin is not None and term.margin >= self.margin:
            self.margin = term.margin
            self.margin_se = se


class StepJudge:
    def __init__(self, slo: Slo, interval_s: float, settle: int, step_s: float,
                 max_step_s: float, max_schedule_lag_p99_ms: float, workers: int = 1,
                 batch_window_ms: float = 0.0):
        self.slo = slo
        self.interval_s = interval_s
        self.settle = settle
        self.step_s = step_s
        self.max_step_s = max(max_step_s, step_s)
        self.workers = max(1, workers)
        self.tails = slo.tail_bounds()
        # Next to the tightest latency bound, plus whatever a batch window delays slots by on
        # purpose. Without a latency bound lateness changes no latency verdict, and the
        # client_ok bound (which includes the batch window) only flags the client's bad
        # intervals.
        tolerance_ms = slo.lag_tolerance_ms()
        self.lag_bound_ns = int((tolerance_ms + batch_window_ms if tolerance_ms is not None
                                 else max_schedule_lag_p99_ms) * 1e6)
        self._hist_names = tuple(dict.fromkeys(b.hist_name for b in self.tails)) or ("latency",)
        self._figs = _IntervalFigures()

    def judge(self, intervals: list[IntervalSnapshot], rate_rps: float,
              final: bool = False, full_length: bool = False,
              saturation_rps: float | None = None) -> Verdict | None:
        """The step's verdict, or None while it should go on.

        full_length: no verdict before max_step_s (a confirmation step). saturation_rps: the
        server's throughput when overloaded, if a step has seen it: the utilisation it implies
        sets how long a step near capacity must run (docs/search.md, "Steady state").
        """
        self._figs.keep_only(intervals)
        faults = list(dict.fromkeys(f for s in intervals for f in s.faults))
        if faults:  # a pool member failed (crestline.engine.ray): the client's fault
            return Verdict("invalid", "; ".join(faults), 0.0, intervals[self.settle:])
        guarded = self._gpu_guard(intervals)
        if guarded:
            return guarded
        measured = intervals[self.settle:]
        if not measured:
            return Verdict("unsure", "stopped before any measured interval", 0.0) if final else None
        step = _Step(measured, rate_rps, final, sum(s.dur_s for s in measured),
                     full_length=full_length)
        step.final = final or self._at_full_length(step)
        if full_length and not step.final:
            return None
        # A confirmation decides what is reported: undecided at its length, it runs up to
        # twice as long before it is called unsure (more samples, a tighter estimate).
        step.extend = full_length and not final and step.mdur < 2 * self.max_step_s - 1e-9
        step.last_look = full_length and not step.extend
        hiccups = [i for i, s in enumerate(measured) if self._client_hiccup(s)]
        if len(hiccups) * 2 > step.k:
            return self._mostly_late(step, hiccups, saturation_rps)
        clean = [s for i, s in enumerate(measured) if i not in hiccups]
        if not clean:
            return None  # nothing but the client's hiccup yet: no word on the server
        spike_ids = {id(s) for s in self._spikes_of(clean)}
        spikes = [i for i, s in enumerate(measured) if id(s) in spike_ids]
        excused = sorted(set(spikes) | set(hiccups))
        pool = [s for i, s in enumerate(measured) if i not in excused] or clean
        sustain = self._sustainability(step, pool)
        terms = self._slo_terms(step, pool)
        step.needed_s = self._needed_s(step, pool, terms, saturation_rps)
        v = self._decide(step, sustain, terms, spikes, len(spikes), pool)
        if v is not None:
            v.hiccups = len(hiccups)
            if hiccups:
                v.why += f"; {len(hiccups)} interval(s) of client lag left out"
        return v

    def p50_ns(self, snap: IntervalSnapshot) -> int:
        """An interval's median latency (0 when empty), computed once per interval."""
        return self._figs.p50_ns(snap)

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

    # -- 1. the client -----------------------------------------------------------------------
    def _client_hiccup(self, s: IntervalSnapshot) -> bool:
        """The client, not the server, was late in this interval: its schedule lag is large
        next to the SLO, or its processes used (nearly) all their CPU."""
        return self._figs.lag_p99_ns(s) > self.lag_bound_ns or self._cpu_saturated(s)

    def _cpu_saturated(self, s: IntervalSnapshot) -> bool:
        """Every client process busy nearly all the interval: its own delays (reading
        responses late, say) are in the latencies, by an amount nothing measures."""
        return s.dur_s > 0 and s.cpu_s / s.dur_s >= _CPU_SATURATED * self.workers

    def _mostly_late(self, step: _Step, hiccups: list[int],
                     saturation_rps: float | None) -> Verdict | None:
        """Most intervals had client lag. The verdict stands where lateness cannot have made
        it: a pass (lateness only adds latency) on a schedule the client did issue, or a fail
        whose excess over the bound is larger than the lag. Otherwise the step is invalid."""
        measured = step.measured
        sustain = self._sustainability(step, measured)
        terms = self._slo_terms(step, measured)
        step.needed_s = self._needed_s(step, measured, terms, saturation_rps)
        v = self._decide(step, sustain, terms, [], 0, measured)
        late = (f"client fell behind its schedule in {len(hiccups)} of {step.k} intervals "
                f"(schedule lag p99 over {self.lag_bound_ns / 1e6:.3g} ms, or its CPU "
                "saturated)")
        if v is None:
            return Verdict("invalid", late, 0.0, measured) if step.final else None
        v.hiccups = len(hiccups)
        expected = step.rate_rps * step.mdur
        issued = sum(s.scheduled for s in measured) >= expected - 3 * math.sqrt(expected) - 2
        # How much lateness could have added: the worst schedule lag, or no bound at all
        # where the client's CPU was saturated.
        lag_ms = (math.inf if any(self._cpu_saturated(s) for s in measured)
                  else max(self._figs.lag_p99_ns(s) for s in measured) / 1e6)
        if v.verdict == "pass" and issued:
            v.why += f"; despite client lag ({len(hiccups)} of {step.k} intervals)"
            return v
        if v.verdict == "fail" and terms.failed_tails and issued and all(
                value - lag_ms > b.bound_ms for b, value in terms.failed_tails):
            v.why += f"; the excess is beyond the client's lag ({lag_ms:.3g} ms)"
            return v
        if step.k < 3 and not step.final:
            return None  # one or two late intervals: the next ones may be on time
        v2 = Verdict("invalid", late, 0.0, measured)
        v2.hiccups = len(hiccups)
        return v2

    # -- 2. spikes: isolated bad intervals that recover, tail only ----------------------------
    def _spikes_of(self, measured: list[IntervalSnapshot]) -> list[IntervalSnapshot]:
        """The intervals excused as spikes (the client's hiccups already left out)."""
        k = len(measured)
        p50s = np.array([self._figs.p50_ns(s) for s in measured], dtype=np.float64)
        typical_p50 = float(np.median(p50s)) if k else 0.0
        # One excused spike per step (one more per 30 s); a step that uses the excuse must run
        # twice the usual length, so a second episode (congestion recurs, a GC pause does not)
        # has time to show.
        budget = 1 + k // 30 if k >= 5 else 0
        excused: list[IntervalSnapshot] = []
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
                excused.append(measured[i])
        ids = {id(s) for s in excused}
        if excused and not self._comfortable([s for s in measured if id(s) not in ids], 0.2):
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

    # -- 3. sustainability and steady state ------------------------------------------------
    def _sustainability(self, step: _Step, pool: list[IntervalSnapshot]) -> _Sustain:
        measured, k = step.measured, step.k
        scheduled = sum(s.scheduled for s in measured)
        completed = sum(s.completed for s in measured)
        # Responses per arrival: a request that failed unanswered (timeout, reset, refused)
        # was not served either.
        ratio = completed / scheduled if scheduled else 1.0
        # At low rates a single request in flight at the cut moves the ratio by percents:
        # a shortfall counts only beyond what the backlog's own noise explains.
        deficit = scheduled - completed
        noise = 3 * math.sqrt(np.mean([s.inflight for s in measured]) + 1) + 2
        real_deficit = deficit > noise
        q = [s.inflight for s in measured]
        arrivals_per_interval = max(step.rate_rps * self.interval_s, 1.0)
        growth = theil_sen(q) / arrivals_per_interval if k >= 3 else 0.0
        backlog_up = k >= 3 and growth > 0.01 and q[-1] - q[0] > noise
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
        return _Sustain(ratio, real_deficit, problem, self._drift(q, noise, pool))

    def _drift(self, inflight: list, noise: float, pool: list[IntervalSnapshot]) -> str | None:
        """An upward trend over the step's intervals: the queue has not settled yet, so what
        the step measured is not its steady state, whatever its percentile says."""
        if drifting_up(inflight, noise):
            return "in-flight drifting up"
        p50s = [self._figs.p50_ns(s) for s in pool]
        if p50s and drifting_up(p50s, 0.25 * float(np.median(p50s)) + 1e5):
            return "median latency drifting up"
        for b in self.tails:
            fr = [self._figs.exceed(s, b.hist_name, b.bound_ns) / max(_total(s, b.hist_name), 1)
                  for s in pool]
            if drifting_up(fr, 2 * b.tail):
                return f"{b.name} exceedances drifting up"
        return None

    def _needed_s(self, step: _Step, pool: list, terms: _SloTerms,
                  saturation_rps: float | None) -> float:
        """Measured time before a pass: step_s, or more near capacity, where the queue relaxes
        slowly and a short window reads a heavy tail low. Capped at max_step_s."""
        need = self.step_s
        if saturation_rps:
            lat = Hist.empty()
            for s in pool:
                lat.add(s.latency)
            mean_s = lat.mean_ns() / 1e9 if lat.total else 0.0
            need = max(need, _RELAX_SPAN * relaxation_s(mean_s, step.rate_rps / saturation_rps))
        need = max(need, _TAU_SPAN * terms.tau * self.interval_s)
        # Past max_step_s the queue is too slow for any short look: no early pass at all,
        # and a confirmation runs to twice its length.
        return need if need < self.max_step_s else float("inf")

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
        """A percentile: a one-sided 95% bound on the exceedance fraction, its error taken
        over intervals (autocorrelation-aware), not over requests."""
        lat = stats.hist(b.hist_name)
        n, tail, bound_ns = lat.total, b.tail, b.bound_ns
        xs = [self._figs.exceed(s, b.hist_name, bound_ns) for s in pool]
        ns = [_total(s, b.hist_name) for s in pool]
        x = sum(xs)
        fracs = [xi / ni for xi, ni in zip(xs, ns, strict=True) if ni]
        logs = [math.log(max(self._figs.pct_ns(s, b.hist_name, b.percentile), 1))
                for s, ni in zip(pool, ns, strict=True) if ni]
        tau = max(autocorr_time(fracs), autocorr_time(logs))
        out.tau = max(out.tau, tau)
        p, se = tail_fraction(xs, ns, tail, tau)
        margin_se = (float(np.std(logs, ddof=1)) * math.sqrt(tau / len(logs))
                     if len(logs) >= 3 else None)
        out.widen(term, margin_se)
        desc = term.versus
        point = f"{desc} (by the point estimate after {step.mdur:.0f} s)"
        enough = n >= _MIN_TAIL_SAMPLES / tail
        # Near capacity slow requests come in bursts that can fill a whole interval, so
        # "far over" needs either several intervals or a median over the bound too.
        p50_ns = lat.values_at((50.0,))[0] if n else 0
        if n and x >= 30 and ((step.k >= 5 and x / n > 3 * tail)
                              or (x / n > 10 * tail and p50_ns > bound_ns)):
            out.fails.append(f"{desc} (far over)")
            out.failed_tails.append((b, term.value))
        elif p - Z_ONE_SIDED * se >= tail and step.k >= 3:
            out.fails.append(desc)
            out.failed_tails.append((b, term.value))
        elif enough and p + Z_ONE_SIDED * se <= tail:
            out.whys.append(desc)
        elif step.final and enough and (p + se <= tail or (
                (step.last_look or not step.full_length) and p <= _FINAL_PASS * tail)):
            out.whys.append(point)
        elif step.final and enough and p >= _FINAL_FAIL * tail and (
                not step.extend or p - se >= tail):
            out.fails.append(point)
            out.failed_tails.append((b, term.value))
        else:
            if not enough:
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

        def verdict(name, why, m, **kw):
            return Verdict(name, why, m, measured, spikes, margin_se=terms.margin_se, **kw)

        if terms.fails:
            return verdict("fail", "; ".join(terms.fails) + note, max(margin, 0.05),
                           decisive=any("far over" in f for f in terms.fails))
        if sustain.ratio < 0.9 and sustain.real_deficit and k >= 2:
            return verdict("fail", f"queue growing fast: achieved {sustain.ratio:.1%} of offered",
                           max(margin, 0.05), decisive=True)
        if sustain.problem and (step.mdur >= self.step_s - 1e-9 or step.final or (
                sustain.ratio < 0.97 and sustain.real_deficit)):
            return verdict("fail", f"not sustainable: {sustain.problem}", max(margin, 0.05),
                           decisive=True)
        all_pass = not terms.undecided and not sustain.problem and not sustain.drift
        # An early pass needs a wide margin: near capacity a few calm seconds prove little.
        comfortable = (not excused and margin <= _EARLY_PASS_MARGIN
                       and self._comfortable(pool, 0.5))
        needed_s = min(2 * step.needed_s if excused and spikes else step.needed_s,
                       self.max_step_s)
        if all_pass and step.full_length and step.extend and step.needed_s == float("inf"):
            return None  # near saturation a confirmation takes its longest look
        if all_pass and (step.mdur >= needed_s - 1e-9 or (
                k >= 3 and comfortable and step.mdur >= max(self.step_s, step.needed_s) / 2)):
            return verdict("pass", "; ".join(terms.whys) + note, min(margin, -0.01))
        if step.final and step.extend:
            return None
        if step.final:
            why = "; ".join(terms.undecided or [
                sustain.problem or sustain.drift
                or f"shorter than the {needed_s:.0f} s a pass needs at this rate"])
            starved = (terms.starved == len(terms.undecided) and bool(terms.undecided)
                       and not sustain.problem and margin < 0)
            return verdict("unsure", f"undecided after {step.mdur:.0f} s: {why}", margin,
                           starved=starved)
        return None

    # -- overload while holding a rate ---------------------------------------------------------
    def overloaded(self, intervals: list[IntervalSnapshot]) -> tuple[str, float] | None:
        """(why, achieved rps) when the last two intervals show overload: completions fall
        behind arrivals beyond the backlog's noise, or the median is over a latency bound and
        rising, with in-flight rising either way. That is the server, not its warm-up (a
        warming server keeps up, only slower) and not the client (its lag is not in it)."""
        if len(intervals) < 2:
            return None
        last = intervals[-2:]
        sched = sum(s.scheduled for s in last)
        done = sum(s.completed for s in last)
        q = [s.inflight for s in intervals]
        noise = 3 * math.sqrt(np.mean(q) + 1) + 2
        if q[-1] <= q[-2] or q[-1] - q[0] <= noise:
            return None
        dur = sum(s.dur_s for s in last) or 1.0
        if sched and done / sched < 0.9 and sched - done > noise:
            return f"overloaded: achieved {done / sched:.0%} of offered", done / dur
        p50s = [self._figs.p50_ns(s) for s in last]
        tightest_ns = min((b.bound_ns for b in self.tails), default=None)
        if tightest_ns is not None and p50s[1] >= p50s[0] > tightest_ns:
            return "overloaded: median latency over the bound and rising", done / dur
        return None
