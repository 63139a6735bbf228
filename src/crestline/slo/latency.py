"""Latency percentile bounds: `--slo p99=25ms`, `p999=80ms`, `p99.5=10ms`, `p50=3` (ms).

Checked on the pooled latency histogram (from intended send time), capped at its exact max.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from crestline.errors import ConfigError
from crestline.slo.bound import TailBound
from crestline.units import parse_duration_s

_PCT_RE = re.compile(r"^p(\d+(?:\.\d+)?)$")


def percentile_of(name: str) -> float:
    """p99 -> 99, p999 -> 99.9, p9999 -> 99.99, p99.5 -> 99.5, p50 -> 50.

    Raises ConfigError for a name that is no percentile or lies outside (0, 100).
    """
    m = _PCT_RE.match(name)
    if not m:
        raise ConfigError(f"{name!r} is not a percentile: write p50, p90, p99, p999 or p99.5")
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


def parse_bound_ms(key: str, value: str) -> float:
    """A time bound in ms: `25ms`, `2s`, or a bare number, which is in ms (the unit latency
    SLOs are written in). Raises ConfigError naming `--slo key`."""
    return 1e3 * parse_duration_s(value if not value[-1].isdigit() else value + "ms",
                                  f"--slo {key}")


@dataclass(frozen=True)
class LatencyBound(TailBound):
    percentile: float  # 0 < percentile < 100
    bound_ms: float

    help: ClassVar[str] = "p50, p90, p99, p999"
    hist_name: ClassVar[str] = "latency"

    @property
    def name(self) -> str:
        p = f"{self.percentile:g}".replace(".", "")
        return f"p{p}"

    @property
    def order(self) -> float:
        return self.percentile

    @classmethod
    def claims(cls, key: str) -> bool:
        return bool(_PCT_RE.match(key))

    @classmethod
    def parse(cls, key: str, value: str, item: str) -> LatencyBound:
        return cls(percentile_of(key), parse_bound_ms(key, value))
