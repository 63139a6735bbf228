"""What the embedding API hands back: plain, frozen dataclasses with `to_dict()`.

Built from the engine's own figures (measure/result.py, the search policy's step and result
dicts), so every number means what docs/measurement.md says. Pure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from crestline.measure.result import IntervalSnapshot


@dataclass(frozen=True)
class Percentiles:
    """Latency percentiles in ms (from the intended send time); max is the exact maximum."""

    p50: float
    p90: float | None
    p99: float
    p999: float
    max: float | None

    @classmethod
    def from_dict(cls, d: dict) -> Percentiles:
        return cls(d["p50"], d.get("p90"), d["p99"], d["p999"], d.get("max"))

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


@dataclass(frozen=True)
class Interval:
    """One interval as it closed (merged across every engine of the pool). Rates are per
    second of the interval; None for the drain, whose length is a few ms of waiting."""

    index: int
    t_s: float
    dur_s: float
    drain: bool
    scheduled: int
    sent: int
    completed: int
    ok: int
    errors: int
    shed: int
    offered_rps: float | None
    achieved_rps: float | None
    latency_ms: Percentiles
    send_lag_p99_ms: float
    client_cpu_cores: float | None
    faults: tuple[str, ...] = ()
    members: tuple[dict, ...] | None = None
    # The exact histograms and counters, for harnesses that merge or re-read them.
    snapshot: IntervalSnapshot | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_snapshot(cls, snap: IntervalSnapshot) -> Interval:
        d = snap.to_dict()
        return cls(snap.index, d["t_s"], d["dur_s"], d["drain"], d["scheduled"], d["sent"],
                   d["completed"], d["ok"], d["errors"], d["shed"], d["offered_rps"],
                   d["achieved_rps"], Percentiles.from_dict(d["latency_ms"]),
                   d["send_lag_ms"]["p99"], d["client_cpu_cores"], tuple(snap.faults),
                   None if snap.members is None else tuple(snap.members), snap)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "snapshot"}
        d["latency_ms"] = self.latency_ms.to_dict()
        d["faults"], d["members"] = list(self.faults), (None if self.members is None
                                                         else list(self.members))
        return d


@dataclass(frozen=True)
class StageResult:
    """One stage: its totals pooled exactly over its intervals (drain included in the
    counts and percentiles, not in the rates), and whether the client kept its schedule."""

    rate_rps: float
    duration_s: float
    interrupted: bool
    offered_rps: float
    achieved_rps: float
    scheduled: int
    completed: int
    ok: int
    errors: int
    latency_ms: Percentiles
    client_ok: bool
    client_problems: tuple[str, ...]
    intervals: tuple[Interval, ...]

    @classmethod
    def from_run(cls, rate_rps: float, run: dict, intervals: list[Interval]) -> StageResult:
        """From a RunResult.to_dict() over the stage's snapshots."""
        req = run["requests"]
        return cls(rate_rps, run["duration_s"], run["interrupted"], run["offered_rps"],
                   run["achieved_rps"], req["scheduled"], req["completed"], req["ok"],
                   req["errors"], Percentiles.from_dict(run["latency_ms"]), run["client_ok"],
                   tuple(run["client_problems"]), tuple(intervals))

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "intervals"}
        d["latency_ms"] = self.latency_ms.to_dict()
        d["client_problems"] = list(self.client_problems)
        d["intervals"] = [iv.to_dict() for iv in self.intervals]
        return d


@dataclass(frozen=True)
class StepResult:
    """One judged search step (docs/search.md): verdict pass, fail, unsure or invalid."""

    index: int
    rate_rps: float
    phase: str
    verdict: str
    why: str
    achieved_rps: float | None
    latency_ms: dict
    error_rate: float
    duration_s: float
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_dict(cls, index: int, d: dict) -> StepResult:
        return cls(index, d["rate_rps"], d["phase"], d["verdict"], d.get("why", ""),
                   d["achieved_rps"], dict(d["latency_ms"]), d["error_rate"], d["duration_s"],
                   d)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, **self.raw}


@dataclass(frozen=True)
class SearchResult:
    """The search's outcome; `to_dict()` is the `--out` JSON of `crestline search`."""

    capacity_rps: float | None
    converged: bool
    reason: str
    interrupted: bool
    steps: tuple[StepResult, ...]
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> SearchResult:
        return cls(d["capacity_rps"], d["converged"], d["reason"], d.get("interrupted", False),
                   tuple(StepResult.from_dict(i, s) for i, s in enumerate(d["steps"])), d)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)
