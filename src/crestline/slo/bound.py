"""The seam for SLO kinds: what a bound is given (a Pool), what it gives back (a Term).

Pure. A run, a search step and a report all evaluate a bound the same way: pooled statistics
in, one term out. The step judge adds a sequential test on top, chosen by the bound's
`family`, never by its kind, so a new kind (TTFT, ITL, goodput) is one new class in
crestline.slo.registry and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

from crestline.errors import ConfigError
from crestline.measure.hdr import Hist

# How the step judge tests a family, given enough intervals:
#   TAIL: a percentile of a histogram, tested on the count of samples above the bound;
#   RATE: a fraction of events (errors over scheduled), tested on the event count;
#   LEVEL: a figure compared once (GPU utilisation), no sampling error to speak of.
TAIL, RATE, LEVEL = "tail", "rate", "level"


@dataclass(frozen=True)
class Term:
    """One bound evaluated on one pool of measurements.

    value and bound are in `unit`; value is None when nothing measured it (met is then None
    too, and counts as not met wherever a yes or no is needed). text is the line a run prints
    ("p99 5.39 ms <= 50 ms"); versus the clause a step's `why` uses ("p99 5.39 ms vs 50 ms").
    margin is log(value / bound): < 0 inside the SLO.
    """

    name: str
    value: float | None
    bound: float
    unit: str
    met: bool | None
    text: str
    versus: str = ""
    margin: float | None = None


@dataclass
class Pool:
    """Pooled statistics of a run or of a step's intervals: what every bound reads.

    hists: pooled histograms by name ("latency", later "ttft", "itl"); errors: requests that
    ended in an error of any kind; scheduled: slots offered. GPU figures come either already
    folded per device (`gpu_summary`, a run's `gpu.summary`) or as per-interval windows,
    folded only when a bound asks (most SLOs have no GPU bound).
    """

    hists: Mapping[str, Hist] = field(default_factory=dict)
    errors: int = 0
    scheduled: int = 0
    gpu_windows: list | None = None
    gpu_summary: dict | None = None
    # token streams: crestline.measure.stream counters, and the requests that ended (ok,
    # failed or shed), goodput's denominator
    stream: Mapping[str, int] = field(default_factory=dict)
    ended: int = 0

    def hist(self, name: str) -> Hist:
        h = self.hists.get(name)
        return h if h is not None else Hist.empty()

    @cached_property
    def gpu(self) -> dict:
        """{device id: crestline.telemetry.recorder.summarize figures}."""
        if self.gpu_summary is not None:
            return self.gpu_summary
        if not self.gpu_windows:
            return {}
        from crestline.telemetry.recorder import summarize

        return summarize(self.gpu_windows)

    @classmethod
    def of_run(cls, result) -> Pool:
        """The pool of a whole crestline.measure.result.RunResult."""
        errors, c = sum(result.by_error.values()), result.counters
        return cls(result.hists, errors, c["scheduled"],
                   gpu_summary=(result.gpu or {}).get("summary") or {},
                   stream=result.stream, ended=c["ok"] + errors + c["shed"])

    @classmethod
    def of_intervals(cls, snaps, hist_names=("latency",), counted=None) -> Pool:
        """The pool of some IntervalSnapshots: histograms pooled over `snaps`; errors,
        scheduled and GPU windows over `counted` (default the same intervals). A step's judge
        leaves excused spikes out of the histograms only."""
        counted = snaps if counted is None else counted
        hists = {}
        for name in hist_names:
            h = Hist.empty()
            for s in snaps:
                if name in s.hists:
                    h.add(s.hists[name])
            hists[name] = h
        stream: dict = {}
        for s in counted:
            for k, v in s.stream.items():
                stream[k] = stream.get(k, 0) + v
        return cls(hists, sum(s.errors for s in counted), sum(s.scheduled for s in counted),
                   gpu_windows=[s.gpu for s in counted], stream=stream,
                   ended=sum(s.ok + s.errors + s.shed for s in counted))


class Bound:
    """One SLO term as the user wrote it. Subclasses are frozen dataclasses.

    Class side (parsing): `claims(key)` says whether `--slo key=...` is this kind's; `parse`
    builds the bound or raises ConfigError naming the fix; `help` names the kind in the
    "unknown SLO" message; `order` sorts bounds of one kind among themselves.
    Instance side: `name` (the key in a result's `slo`), `text()` (its value there),
    `describe()` ("p99 <= 25 ms"), `evaluate(pool)`, and the `family` the judge tests it by.
    """

    family: ClassVar[str] = LEVEL
    help: ClassVar[str] = ""
    unmeasured: ClassVar[str] = "not measured"  # why a term has no value
    name: str

    @classmethod
    def claims(cls, key: str) -> bool:
        raise NotImplementedError

    @classmethod
    def parse(cls, key: str, value: str, item: str) -> Bound:
        raise NotImplementedError

    @classmethod
    def missing_value(cls, key: str, item: str) -> ConfigError:
        """The error for `--slo key` with no value."""
        return ConfigError(f"bad --slo {item!r}: write NAME=VALUE, e.g. p99=25ms or errors=0.1%")

    @property
    def order(self) -> float:
        return 0.0

    def text(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} <= {self.text()}"

    def evaluate(self, pool: Pool) -> Term:
        raise NotImplementedError

    def term(self, value: float | None, bound: float, unit: str, value_text: str,
             bound_text: str, margin: float | None, met: bool | None = None) -> Term:
        """A Term with the texts every kind writes the same way; met defaults to value <= bound."""
        if value is None:
            return Term(self.name, None, bound, unit, None,
                        f"{self.name}: {self.unmeasured}, so not met", "", None)
        met = value <= bound if met is None else met
        return Term(self.name, value, bound, unit, met,
                    f"{self.name} {value_text} {'<=' if met else '>'} {bound_text}",
                    f"{self.name} {value_text} vs {bound_text}", margin)


class TailBound(Bound):
    """A percentile of one histogram: the judge counts samples above `bound_ns`."""

    family: ClassVar[str] = TAIL
    hist_name: ClassVar[str] = "latency"
    percentile: float
    bound_ms: float

    @property
    def tail(self) -> float:
        """The fraction of samples allowed above the bound (0.01 for p99)."""
        return 1.0 - self.percentile / 100.0

    @property
    def bound_ns(self) -> int:
        return int(self.bound_ms * 1e6)

    def text(self) -> str:
        return f"{self.bound_ms:g}ms"

    def describe(self) -> str:
        return f"{self.name} <= {self.bound_ms:g} ms"

    def evaluate(self, pool: Pool) -> Term:
        """The percentile of the pooled histogram, capped at its exact max."""
        h = pool.hist(self.hist_name)
        value_ns = h.capped_values_at((self.percentile,))[0]
        value_ms = value_ns / 1e6
        # No sample is no evidence of meeting it: an --assert gate must not pass on nothing.
        met = h.total > 0 and value_ms <= self.bound_ms
        return self.term(value_ms, self.bound_ms, "ms", f"{value_ms:.3g} ms",
                         f"{self.bound_ms:g} ms",
                         math.log(max(value_ns, 1) / self.bound_ns), met)


class RateBound(Bound):
    """A largest allowed fraction of events: the judge tests the event count."""

    family: ClassVar[str] = RATE
    max_rate: float

    def counts(self, pool: Pool) -> tuple[int, int]:
        """(events, trials) in the pool."""
        raise NotImplementedError
