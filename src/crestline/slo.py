"""Service-level objectives as users write them: `p99=25ms`, `p999=80ms`, `errors=0.1%`.

Pure. A latency bound is checked on the pooled histogram of a step's measured intervals;
the error bound on the fraction of requests that ended in an error of any kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from crestline.errors import ConfigError
from crestline.units import parse_duration_s

_PCT_RE = re.compile(r"^p(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class LatencyBound:
    percentile: float  # 0 < percentile < 100
    bound_ms: float

    @property
    def name(self) -> str:
        p = f"{self.percentile:g}".replace(".", "")
        return f"p{p}"

    @property
    def tail(self) -> float:
        """The fraction of requests allowed above the bound (0.01 for p99)."""
        return 1.0 - self.percentile / 100.0


@dataclass(frozen=True)
class Slo:
    latency: tuple[LatencyBound, ...] = field(default_factory=tuple)
    max_error_rate: float | None = None  # fraction, e.g. 0.001

    def to_dict(self) -> dict:
        d = {b.name: f"{b.bound_ms:g}ms" for b in self.latency}
        if self.max_error_rate is not None:
            d["errors"] = f"{self.max_error_rate * 100:g}%"
        return d

    def describe(self) -> str:
        parts = [f"{b.name} <= {b.bound_ms:g} ms" for b in self.latency]
        if self.max_error_rate is not None:
            parts.append(f"errors <= {self.max_error_rate * 100:g}%")
        return ", ".join(parts)


def _percentile(name: str) -> float:
    """p99 -> 99, p999 -> 99.9, p9999 -> 99.99, p99.5 -> 99.5, p50 -> 50."""
    m = _PCT_RE.match(name)
    if not m:
        raise ConfigError(f"unknown SLO {name!r}: write p50, p90, p99, p999 or errors")
    digits = m.group(1)
    if "." in digits:
        value = float(digits)
    elif len(digits) > 2 and digits.startswith("99"):
        value = float(digits[:2] + "." + digits[2:])
    else:
        value = float(digits)
    if not 0 < value < 100:
        raise ConfigError(f"SLO percentile {name!r} must lie between p0 and p100")
    return value


def parse_slo(items: list[str]) -> Slo:
    """Slo from ['p99=25ms', 'errors=0.1%', ...]. Raises ConfigError naming the fix."""
    bounds: dict[float, LatencyBound] = {}
    max_err = None
    if not items:
        raise ConfigError("give at least one --slo, e.g. --slo p99=25ms")
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise ConfigError(f"bad --slo {item!r}: write NAME=VALUE, e.g. p99=25ms or errors=0.1%")
        if key in ("errors", "error", "error_rate"):
            try:
                max_err = float(value[:-1]) / 100 if value.endswith("%") else float(value)
            except ValueError:
                raise ConfigError(f"bad --slo {item!r}: write errors=0.1% or errors=0.001") from None
            if not 0 <= max_err < 1:
                raise ConfigError(f"bad --slo {item!r}: the error rate must lie in [0%, 100%)")
            continue
        pct = _percentile(key)
        bound_s = parse_duration_s(value if not value[-1].isdigit() else value + "ms",
                                   f"--slo {key}")
        bounds[pct] = LatencyBound(pct, bound_s * 1e3)
    return Slo(tuple(bounds[p] for p in sorted(bounds)), max_err)
