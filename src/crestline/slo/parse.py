"""Service-level objectives as users write them: `p99=25ms`, `p999=80ms`, `errors=0.1%`, and
optional GPU bounds (`gpu_util<=90%`, `gpu_mem<=70GiB`, `gpu_power<=300W`, `gpu_temp<=85C`).

Pure. Each term is a bound of one kind (crestline.slo.registry); this module splits
`--slo` items into them and holds the resulting Slo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crestline.errors import ConfigError
from crestline.slo import registry
from crestline.slo.bound import TAIL, Bound
from crestline.slo.errors import ErrorBound
from crestline.slo.gpu import GPU_METRICS, GpuBound
from crestline.slo.latency import LatencyBound

__all__ = ["GPU_METRICS", "GpuBound", "LatencyBound", "Slo", "parse_slo", "slo_from_dict",
           "slo_text"]


# The share of the tightest tail bound that client lateness may take (Slo.lag_tolerance_ms);
# no absolute floor: a floor misfires when a server shares the client's cores and every wake
# is a little late.
LAG_SHARE = 0.1


@dataclass(frozen=True)
class Slo:
    """Every bound of one SLO, in the order results list them."""

    bounds: tuple[Bound, ...] = field(default_factory=tuple)

    def of_kind(self, kind: type[Bound]) -> tuple:
        return tuple(b for b in self.bounds if isinstance(b, kind))

    @property
    def latency(self) -> tuple[LatencyBound, ...]:
        return self.of_kind(LatencyBound)

    @property
    def max_error_rate(self) -> float | None:
        """The error bound as a fraction (0.001), or None without one."""
        errors = self.of_kind(ErrorBound)
        return errors[0].max_rate if errors else None

    @property
    def gpu(self) -> tuple[GpuBound, ...]:
        return self.of_kind(GpuBound)

    def tail_bounds(self, hist_name: str | None = None) -> tuple:
        """The percentile bounds, all or those on one histogram ("latency")."""
        return tuple(b for b in self.bounds if b.family == TAIL
                     and (hist_name is None or b.hist_name == hist_name))

    def lag_tolerance_ms(self) -> float | None:
        """Schedule-lag p99 a verdict under this SLO tolerates, in ms; None without a tail bound.

        Lateness adds to latency one for one (latency counts from the intended send time), so
        it only matters next to the tightest tail bound: LAG_SHARE of it (docs/measurement.md,
        "Did the client keep up?").
        """
        tails = self.tail_bounds()
        return LAG_SHARE * min(b.bound_ms for b in tails) if tails else None

    def to_dict(self) -> dict:
        """{name: bound as written}: a result's `slo`, e.g. {"p99": "25ms", "errors": "0.1%"}."""
        return {b.name: b.text() for b in self.bounds}

    def describe(self) -> str:
        return ", ".join(b.describe() for b in self.bounds)


def parse_slo(items: list[str]) -> Slo:
    """Slo from ['p99=25ms', 'errors=0.1%', ...]. Raises ConfigError naming the fix."""
    if not items:
        raise ConfigError("give at least one --slo, e.g. --slo p99=25ms")
    by_name: dict[str, Bound] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        key = key.removesuffix("<")  # gpu_util<=90% reads as well as gpu_util=90%
        kind = registry.kind_of(key)
        if not value:
            raise (kind or Bound).missing_value(key, item)
        if kind is None:
            helps = [k.help for k in registry.KINDS]
            raise ConfigError(f"unknown SLO {key!r}: write {', '.join(helps[:-1])}, or "
                              f"{helps[-1]}")
        bound = kind.parse(key, value, item)
        by_name[bound.name] = bound  # the last of two same terms wins (p99 and p99.0)
    return Slo(tuple(sorted(by_name.values(), key=registry.rank)))


def slo_from_dict(d) -> Slo | None:
    """The Slo a result's `slo` dict stands for, or None when it is missing or unreadable
    (a report reads files it did not write)."""
    if not isinstance(d, dict) or not d:
        return None
    try:
        return parse_slo([f"{k}={v}" for k, v in d.items()])
    except (ConfigError, TypeError, AttributeError):
        return None


def slo_text(d, le: str = "<=") -> str:
    """A result's `slo` dict as one line, "p99 <= 25ms, errors <= 0.1%" ('' for none)."""
    if not isinstance(d, dict):
        return ""
    return ", ".join(f"{k} {le} {v}" for k, v in d.items())
