"""The verdict on one search step: pass, fail, unsure, or invalid (the client fell behind).

Pure. A step is a run of intervals at one offered rate. Its first `settle` intervals are left
out (the queue adjusts to the new rate); the rest are "measured". A step passes only if it is
sustainable (completions keep up with arrivals, the backlog and latency do not trend up) and a
sequential test on the SLO exceedance count accepts every bound. Isolated bad intervals that
recover (a GC pause, one slow batch) are excused up to a budget; sustained trouble never is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from crestline.measure.hdr import Hist, index_of
from crestline.measure.result import IntervalSnapshot
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


def _exceed(h: Hist, bound_ns: int) -> int:
    """Samples above bound_ns (whole buckets above the bound's bucket)."""
    if h.total == 0:
        return 0
    i = int(index_of(np.array([bound_ns]))[0])
    return int(h.counts[i + 1:].sum())


def _cached(snap: IntervalSnapshot, key, compute):
    """Per-interval figures, computed once: the judge re-reads every interval of a step at each
    new interval, on the event loop, so recomputing them would add loop pauses (send lag)."""
    cache = snap.__dict__.setdefault("_judge_cache", {})
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def _p50_ns(s: IntervalSnapshot) -> int:
    return _cached(s, "p50", lambda: s.latency.values_at((50.0,))[0] if s.latency.total else 0)


def _lag_p99_ns(s: IntervalSnapshot) -> int:
    h = s.hists["schedule_lag"]
    return _cached(s, "lag99", lambda: h.values_at((99.0,))[0] if h.total else 0)


def _exceed_in(s: IntervalSnapshot, bound_ns: int) -> int:
    return _cached(s, ("exceed", bound_ns), lambda: _exceed(s.latency, bound_ns))


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


class StepJudge:
    def __init__(self, slo: Slo, interval_s: float, settle: int, step_s: float,
                 max_step_s: float, max_schedule_lag_p99_ms: float):
        self.slo = slo
        self.interval_s = interval_s
        self.settle = settle
        self.step_s = step_s
        self.max_step_s = max(max_step_s, step_s)
        # Client lateness adds to latency, so it only spoils a verdict when it is large next to
        # the SLO: the bound is the larger of the client_ok bound and 10% of the tightest
        # latency bound.
        tightest_ms = min((b.bound_ms for b in slo.latency), default=0.0)
        self.lag_bound_ns = int(max(max_schedule_lag_p99_ms, 0.1 * tightest_ms) * 1e6)
        self.bounds_ns = [(b, int(b.bound_ms * 1e6)) for b in slo.latency]

    def judge(self, intervals: list[IntervalSnapshot], rate_rps: float,
              final: bool = False, full_length: bool = False) -> Verdict | None:
        """The step's verdict, or None while it should go on.

        full_length: no verdict before max_step_s (a confirmation step).
        """
        # 0. The GPU guard: thermal throttling or an XID error ends the step at once (clocks
        # were cut, or the device faulted, so latency here says nothing about the model).
        for s in intervals:
            trouble = guard_trouble(s.gpu)
            if trouble:
                xid = any(fig and fig.get("xid") for fig in s.gpu.values())
                return Verdict("fail", f"stopped by the GPU guard: {trouble}", 0.5,
                               intervals[self.settle:], decisive=True, abort=xid)

        measured = intervals[self.settle:]
        k = len(measured)
        if k == 0:
            return Verdict("unsure", "stopped before any measured interval", 0.0) if final else None
        mdur = sum(s.dur_s for s in measured)
        # A step runs to max_step_s, longer (up to 3x) while it lacks the samples for a point
        # estimate of the tail to be worth deciding on: at low rates that takes a while.
        n_now = sum(s.latency.total for s in measured)
        enough = all(n_now >= _POINT_TAIL_SAMPLES / b.tail for b, _ in self.bounds_ns)
        final = final or (mdur >= self.max_step_s - 1e-9 and enough) or (
            mdur >= 3 * self.max_step_s - 1e-9)
        if full_length and not final:
            return None

        # 1. Was the client on time? Otherwise this is no verdict on the server.
        late = [i for i, s in enumerate(measured) if _lag_p99_ns(s) > self.lag_bound_ns]
        if len(late) > max(1, k // 10):
            return Verdict("invalid", f"client fell behind its schedule in {len(late)} of {k} "
                           "intervals (schedule lag p99 over bound)", 0.0, measured)

        # 2. Spikes: isolated bad intervals that recover, tail-only.
        p50s = np.array([_p50_ns(s) for s in measured], dtype=np.float64)
        bad = [self._interval_bad(s) for s in measured]
        typical_p50 = float(np.median(p50s)) if k else 0.0
        # One excused spike per step (one more per 30 s); a step that uses the excuse must run
        # twice the usual length, so a second episode (congestion recurs, a GC pause does not)
        # has time to show.
        budget = 1 + k // 30 if k >= 5 else 0
        excused: list[int] = []
        for i in range(k):
            # Excusable: a bad interval between clean ones, with the median unmoved (tail
            # only), in a step that is comfortably within the SLO without it. Near capacity
            # bad intervals cluster and neighbours are not clean, so none is excused there.
            clean_after = i + 1 < k and self._interval_clean(measured[i + 1])
            clean_before = i == 0 or self._interval_clean(measured[i - 1])
            tail_only = p50s[i] <= 1.5 * typical_p50 + 1e5
            if (bad[i] and clean_after and clean_before and tail_only
                    and len(excused) < budget):
                excused.append(i)
        if excused and not self._comfortable([s for i, s in enumerate(measured)
                                              if i not in excused], 0.2):
            excused = []
        excused += [i for i in late if i not in excused]
        pool = [s for i, s in enumerate(measured) if i not in excused] or measured

        # 3. Sustainability over every measured interval.
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
        arrivals_per_interval = max(rate_rps * self.interval_s, 1.0)
        growth = _theil_sen(q) / arrivals_per_interval if k >= 3 else 0.0
        backlog_up = (k >= 3 and growth > 0.01
                      and q[-1] - q[0] > 3 * math.sqrt(np.mean(q) + 1) + 2)
        half = k // 2
        p50_rising = (k >= 4 and np.median(p50s[half:]) > 1.25 * np.median(p50s[:half]) + 1e5
                      and growth > 0.005)
        unsustainable = None
        if ratio < 0.99 and real_deficit and (k >= 3 or final):
            unsustainable = f"achieved {ratio:.1%} of offered"
        elif backlog_up:
            unsustainable = f"in-flight growing by {growth:.1%} of arrivals per interval"
        elif p50_rising:
            unsustainable = "median latency rising within the step"

        # 4. The SLO terms on the pooled histogram.
        lat = Hist.empty()
        for s in pool:
            lat.add(s.latency)
        n = lat.total
        margin = -3.0
        fails, undecided, whys = [], [], []
        starved_terms = 0
        for b, bound_ns in self.bounds_ns:
            x = sum(_exceed_in(s, bound_ns) for s in pool)
            value_ns = lat.capped_values_at((b.percentile,))[0]
            m = math.log(max(value_ns, 1) / bound_ns)
            margin = max(margin, m)
            tail = b.tail
            xs = [_exceed_in(s, bound_ns) for s in pool]
            ns = [s.latency.total for s in pool]
            llr = _llr(x, n, tail * _LOW, min(tail * _HIGH, 0.999)) / _dispersion(xs, ns)
            desc = f"{b.name} {value_ns / 1e6:.3g} ms vs {b.bound_ms:g} ms"
            # Near capacity slow requests come in bursts that can fill a whole interval, so
            # "far over" needs either several intervals or a median over the bound too.
            p50_ns = lat.values_at((50.0,))[0] if n else 0
            if n and x >= 30 and ((k >= 5 and x / n > 3 * tail)
                                  or (x / n > 10 * tail and p50_ns > bound_ns)):
                fails.append(f"{desc} (far over)")
            elif llr >= _SPRT_A and k >= 3:
                fails.append(desc)
            elif llr <= -_SPRT_A and n >= _MIN_TAIL_SAMPLES / tail:
                whys.append(desc)
            elif final and n >= _MIN_TAIL_SAMPLES / tail and x <= _FINAL_PASS * tail * n:
                whys.append(f"{desc} (by the point estimate after {mdur:.0f} s)")
            elif final and n >= _MIN_TAIL_SAMPLES / tail and x >= _FINAL_FAIL * tail * n:
                fails.append(f"{desc} (by the point estimate after {mdur:.0f} s)")
            else:
                if n < _MIN_TAIL_SAMPLES / tail:
                    starved_terms += 1
                    desc += f", {n} samples of {math.ceil(_MIN_TAIL_SAMPLES / tail)} needed"
                undecided.append(desc)
        errors = sum(s.errors for s in measured)
        e_max = self.slo.max_error_rate
        if e_max is not None:
            e = errors / scheduled if scheduled else 0.0
            desc = f"errors {e:.3%} vs {e_max:.3%}"
            if e_max == 0:
                margin = max(margin, 3.0 if errors else -3.0)
                (fails if errors else whys).append(desc)
            else:
                margin = max(margin, math.log((e + 1e-4) / (e_max + 1e-4)))
                llr = _llr(errors, max(scheduled, 1), e_max * _LOW, min(e_max * _HIGH, 0.999))
                # With no error at all, n >= 3 / e_max bounds the rate below e_max at 95%
                # (the rule of three).
                if (errors >= 30 and e > 3 * e_max) or (llr >= _SPRT_A and k >= 3):
                    fails.append(desc)
                elif llr <= -_SPRT_A or (errors == 0 and scheduled >= 3 / e_max):
                    whys.append(desc)
                elif final and scheduled >= _POINT_TAIL_SAMPLES / e_max / 10:
                    (whys if e <= _FINAL_PASS * e_max else
                     fails if e >= _FINAL_FAIL * e_max else undecided).append(
                        f"{desc} (by the point estimate after {mdur:.0f} s)")
                else:
                    if scheduled < 3 / e_max:
                        starved_terms += 1
                    undecided.append(desc)
        for g, value in self.slo.gpu_figures([s.gpu for s in measured]):
            if value is None:
                continue  # no figure: the run's warnings say why
            margin = max(margin, math.log(max(value, 1e-9) / g.bound))
            desc = f"{g.name} {value:.3g}{g.unit} vs {g.text()}"
            # A level, not a tail: three measured intervals settle it.
            (fails if value > g.bound and k >= 3 else whys).append(desc)
        margin = max(-3.0, min(3.0, margin))
        spikes = len([i for i in excused if i not in late])
        note = f"; {spikes} spike interval(s) excused" if spikes else ""

        # 5. Decide.
        if fails:
            return Verdict("fail", "; ".join(fails) + note, max(margin, 0.05), measured, spikes,
                           decisive=any("far over" in f for f in fails))
        if ratio < 0.9 and real_deficit and k >= 2:
            return Verdict("fail", f"queue growing fast: achieved {ratio:.1%} of offered",
                           max(margin, 0.05), measured, spikes, decisive=True)
        if unsustainable and (mdur >= self.step_s - 1e-9 or final or (ratio < 0.97
                                                                        and real_deficit)):
            return Verdict("fail", f"not sustainable: {unsustainable}", max(margin, 0.05),
                           measured, spikes, decisive=True)
        all_pass = not fails and not undecided and not unsustainable
        # An early pass needs a wide margin: near capacity a few calm seconds prove little.
        comfortable = not excused and margin <= _EARLY_PASS_MARGIN and self._comfortable(pool, 0.5)
        needed_s = 2 * self.step_s if excused and spikes else self.step_s
        if all_pass and (mdur >= needed_s - 1e-9
                         or (k >= 3 and comfortable and mdur >= self.step_s / 2)):
            return Verdict("pass", "; ".join(whys) + note, min(margin, -0.01), measured, spikes)
        if final:
            why = "; ".join(undecided or [unsustainable or "undecided"])
            starved = (starved_terms == len(undecided) and not unsustainable and margin < 0)
            return Verdict("unsure", f"undecided after {mdur:.0f} s: {why}", margin, measured,
                           spikes, starved)
        return None

    def _interval_clean(self, s: IntervalSnapshot) -> bool:
        n = s.latency.total
        return all(_exceed_in(s, bound_ns) <= b.tail * n for b, bound_ns in self.bounds_ns)

    def _comfortable(self, intervals, share: float) -> bool:
        """Every bound's pooled exceedance is at most `share` of what the SLO allows."""
        n = sum(s.latency.total for s in intervals)
        return all(sum(_exceed_in(s, bound_ns) for s in intervals) <= share * b.tail * n
                   for b, bound_ns in self.bounds_ns)

    def _interval_bad(self, s: IntervalSnapshot) -> bool:
        n = s.latency.total
        return any(_exceed_in(s, bound_ns) >= 5 and _exceed_in(s, bound_ns) > 5 * b.tail * n
                   for b, bound_ns in self.bounds_ns)
