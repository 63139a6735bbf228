"""The error-rate bound: `--slo errors=0.1%` (or a fraction, `errors=0.001`).

The fraction of scheduled requests that ended in an error of any kind (connect, timeout,
read, HTTP 4xx/5xx, protocol).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from crestline.errors import ConfigError
from crestline.slo.bound import Pool, RateBound, Term

_NAMES = ("errors", "error", "error_rate")


@dataclass(frozen=True)
class ErrorBound(RateBound):
    max_rate: float  # fraction, e.g. 0.001

    help: ClassVar[str] = "errors"
    name: ClassVar[str] = "errors"

    @classmethod
    def claims(cls, key: str) -> bool:
        return key in _NAMES

    @classmethod
    def parse(cls, key: str, value: str, item: str) -> ErrorBound:
        try:
            rate = float(value[:-1]) / 100 if value.endswith("%") else float(value)
        except ValueError:
            raise ConfigError(f"bad --slo {item!r}: write errors=0.1% or errors=0.001") from None
        if not 0 <= rate < 1:
            raise ConfigError(f"bad --slo {item!r}: the error rate must lie in [0%, 100%)")
        return cls(rate)

    def text(self) -> str:
        return f"{self.max_rate * 100:g}%"

    def counts(self, pool: Pool) -> tuple[int, int]:
        return pool.errors, pool.scheduled

    def evaluate(self, pool: Pool) -> Term:
        errors, scheduled = self.counts(pool)
        rate = errors / scheduled if scheduled else 0.0
        if self.max_rate == 0:
            margin = 3.0 if errors else -3.0  # no ratio to a zero bound: all or nothing
        else:
            # The 1e-4 floor keeps an error-free step's margin finite.
            margin = math.log((rate + 1e-4) / (self.max_rate + 1e-4))
        return self.term(100.0 * rate, 100.0 * self.max_rate, "%", f"{rate:.3%}",
                         f"{self.max_rate:.3%}", margin, rate <= self.max_rate)
