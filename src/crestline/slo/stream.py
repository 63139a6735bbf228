"""Token-stream bounds: `ttft_p99=500ms`, `itl_p99=50ms`, `tpot_p50=20ms`, `e2e_p99=10s` (a
percentile of one stream histogram, like a latency bound) and `goodput=95%` (the fraction of
requests that met every per-request stream bound).

One class per kind. The tail kinds read the histograms the core records for streamed
responses that succeeded (crestline.measure.stream: ttft and e2e from the intended send time);
the judge tests them as it tests latency, by their family. Goodput's per-request bounds are
the SLO's own TTFT, TPOT and end-to-end bounds (`per_request_ns`): the core counts a request
good when it met all of them (ITL is a per-gap figure, not a per-request one, so it is no part
of goodput). Definitions: docs/measurement.md, "Token streams".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from crestline.errors import ConfigError
from crestline.slo.bound import Pool, RateBound, TailBound, Term
from crestline.slo.latency import parse_bound_ms, percentile_of


@dataclass(frozen=True)
class StreamTailBound(TailBound):
    """A percentile of one stream histogram: `<prefix>_p<N>=<time>` (a bare number is ms)."""

    percentile: float
    bound_ms: float

    prefix: ClassVar[str] = ""
    unmeasured: ClassVar[str] = "no token stream measured"

    @property
    def name(self) -> str:
        return f"{self.prefix}_p{self.percentile:g}".replace(".", "")

    @property
    def order(self) -> float:
        return self.percentile

    @classmethod
    def claims(cls, key: str) -> bool:
        return key.startswith(cls.prefix + "_p")

    @classmethod
    def parse(cls, key: str, value: str, item: str) -> StreamTailBound:
        return cls(percentile_of(key.removeprefix(cls.prefix + "_")), parse_bound_ms(key, value))


@dataclass(frozen=True)
class TtftBound(StreamTailBound):
    help: ClassVar[str] = "ttft_p99"
    prefix: ClassVar[str] = "ttft"
    hist_name: ClassVar[str] = "ttft"


@dataclass(frozen=True)
class ItlBound(StreamTailBound):
    help: ClassVar[str] = "itl_p99"
    prefix: ClassVar[str] = "itl"
    hist_name: ClassVar[str] = "itl"


@dataclass(frozen=True)
class TpotBound(StreamTailBound):
    help: ClassVar[str] = "tpot_p50"
    prefix: ClassVar[str] = "tpot"
    hist_name: ClassVar[str] = "tpot"


@dataclass(frozen=True)
class E2eBound(StreamTailBound):
    help: ClassVar[str] = "e2e_p99"
    prefix: ClassVar[str] = "e2e"
    hist_name: ClassVar[str] = "e2e"


@dataclass(frozen=True)
class GoodputBound(RateBound):
    """At least `min_fraction` of the requests that ended (ok, failed or shed) were good
    streams; judged as the rate of the rest (`max_rate` = 1 - min_fraction)."""

    min_fraction: float

    help: ClassVar[str] = "goodput=95%"
    name: ClassVar[str] = "goodput"
    unmeasured: ClassVar[str] = "no request ended"

    @property
    def max_rate(self) -> float:
        return 1.0 - self.min_fraction

    @classmethod
    def claims(cls, key: str) -> bool:
        return key == "goodput"

    @classmethod
    def parse(cls, key: str, value: str, item: str) -> GoodputBound:
        try:
            frac = float(value[:-1]) / 100 if value.endswith("%") else float(value)
        except ValueError:
            raise ConfigError(f"bad --slo {item!r}: write goodput=95% or goodput=0.95") from None
        if not 0 < frac <= 1:
            raise ConfigError(f"bad --slo {item!r}: goodput must lie in (0%, 100%]")
        return cls(frac)

    def text(self) -> str:
        return f"{self.min_fraction * 100:g}%"

    def describe(self) -> str:
        return f"goodput >= {self.text()}"

    def counts(self, pool: Pool) -> tuple[int, int]:
        """(requests that were not good, requests that ended)."""
        good = pool.stream.get("good", 0)
        return max(pool.ended - good, 0), pool.ended

    def evaluate(self, pool: Pool) -> Term:
        bad, ended = self.counts(pool)
        if not ended:
            return self.term(None, 100 * self.min_fraction, "%", "", "", None)
        frac = 1 - bad / ended
        margin = math.log((bad / ended + 1e-4) / (self.max_rate + 1e-4))
        t = self.term(100 * frac, 100 * self.min_fraction, "%", f"{frac:.2%}",
                      f"{self.min_fraction:.2%}", margin, frac >= self.min_fraction)
        # value >= bound is the good side here: say so in the texts
        return Term(t.name, t.value, t.bound, t.unit, t.met,
                    t.text.replace(" <= ", " >= ").replace(" > ", " < "),
                    t.versus, t.margin)


STREAM_KINDS = (TtftBound, ItlBound, TpotBound, E2eBound, GoodputBound)


def per_request_ns(bounds) -> tuple[int, int, int] | None:
    """Goodput's per-request bounds (ttft, tpot, e2e) in ns from an SLO's bounds (0: none of
    that kind; the tightest where several percentiles are given); None without goodput."""
    if not any(isinstance(b, GoodputBound) for b in bounds):
        return None

    def tightest(kind) -> int:
        ns = [b.bound_ns for b in bounds if isinstance(b, kind)]
        return min(ns) if ns else 0

    return tightest(TtftBound), tightest(TpotBound), tightest(E2eBound)
