"""Service-level objectives as users write them: `p99=25ms`, `p999=80ms`, `errors=0.1%`, and
optional GPU bounds (`gpu_util<=90%`, `gpu_mem<=70GiB`, `gpu_power<=300W`, `gpu_temp<=85C`).

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


# GPU bounds: name -> (field of a crestline.telemetry.window, unit written, how the step folds it).
GPU_METRICS = {
    "gpu_util": ("util_pct", "%"),
    "gpu_mem": ("mem_used_mib", "MiB"),  # or % of the device's memory
    "gpu_power": ("power_w", "W"),
    "gpu_temp": ("temp_c", "C"),
}


@dataclass(frozen=True)
class GpuBound:
    """An upper bound on a GPU figure over a step (the worst GPU counts): utilisation and power
    are the step's means, memory and temperature its maxima."""

    name: str  # gpu_util | gpu_mem | gpu_power | gpu_temp
    bound: float
    unit: str  # "%", "MiB", "W", "C"

    def text(self) -> str:
        return f"{self.bound:g}{self.unit}"

    def value(self, per_device: dict) -> float | None:
        """The worst device's figure from crestline.telemetry.recorder.summarize output, in self.unit."""
        key = GPU_METRICS[self.name][0]
        worst = None
        for d in per_device.values():
            v = d.get(key)
            if v is None:
                continue
            if self.name == "gpu_mem" and self.unit == "%":
                total = d.get("mem_total_mib")
                if not total:
                    continue
                v = 100.0 * v / total
            worst = v if worst is None else max(worst, v)
        return worst


@dataclass(frozen=True)
class Slo:
    latency: tuple[LatencyBound, ...] = field(default_factory=tuple)
    max_error_rate: float | None = None  # fraction, e.g. 0.001
    gpu: tuple[GpuBound, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = {b.name: f"{b.bound_ms:g}ms" for b in self.latency}
        if self.max_error_rate is not None:
            d["errors"] = f"{self.max_error_rate * 100:g}%"
        d.update({g.name: g.text() for g in self.gpu})
        return d

    def gpu_figures(self, windows: list[dict | None]) -> list[tuple[GpuBound, float | None]]:
        """Each GPU bound with the worst device's figure over these intervals' GPU windows, in
        the bound's unit; None where no device reported it."""
        if not self.gpu:
            return []  # the judge asks every interval: no bound, nothing to fold
        from crestline.telemetry.recorder import summarize

        per_device = summarize(windows)
        return [(g, g.value(per_device)) for g in self.gpu]

    def describe(self) -> str:
        parts = [f"{b.name} <= {b.bound_ms:g} ms" for b in self.latency]
        if self.max_error_rate is not None:
            parts.append(f"errors <= {self.max_error_rate * 100:g}%")
        parts += [f"{g.name} <= {g.text()}" for g in self.gpu]
        return ", ".join(parts)


_GPU_VALUE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(%|w|c|mib|gib|mb|gb)?$")


def _gpu_bound(name: str, value: str, item: str) -> GpuBound:
    m = _GPU_VALUE_RE.match(value.lower())
    unit_written = GPU_METRICS[name][1]
    example = {"gpu_util": "gpu_util<=90%", "gpu_mem": "gpu_mem<=70GiB or gpu_mem<=90%",
               "gpu_power": "gpu_power<=300W", "gpu_temp": "gpu_temp<=85C"}[name]
    if not m:
        raise ConfigError(f"bad --slo {item!r}: write e.g. {example}")
    number, unit = float(m.group(1)), (m.group(2) or "")
    if name == "gpu_mem" and number > 0:
        if unit == "%":
            return GpuBound(name, number, "%")
        scale = {"gib": 1024.0, "gb": 1e9 / 2**20, "mib": 1.0, "mb": 1e6 / 2**20}.get(unit)
        if scale is None:
            raise ConfigError(f"bad --slo {item!r}: give gpu_mem in GiB, MiB or %, e.g. {example}")
        return GpuBound(name, number * scale, "MiB")
    if not number > 0:
        raise ConfigError(f"bad --slo {item!r}: the bound must be positive, e.g. {example}")
    if unit and unit != unit_written.lower():
        raise ConfigError(f"bad --slo {item!r}: {name} is in {unit_written}, e.g. {example}")
    if name == "gpu_util" and not 0 < number <= 100:
        raise ConfigError(f"bad --slo {item!r}: utilisation lies in (0, 100]%")
    return GpuBound(name, number, unit_written)


def _percentile(name: str) -> float:
    """p99 -> 99, p999 -> 99.9, p9999 -> 99.99, p99.5 -> 99.5, p50 -> 50."""
    m = _PCT_RE.match(name)
    if not m:
        raise ConfigError(f"unknown SLO {name!r}: write p50, p90, p99, p999, errors, or a GPU "
                          "bound (gpu_util, gpu_mem, gpu_power, gpu_temp)")
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
    gpu: dict[str, GpuBound] = {}
    max_err = None
    if not items:
        raise ConfigError("give at least one --slo, e.g. --slo p99=25ms")
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        key = key.removesuffix("<")  # gpu_util<=90% reads as well as gpu_util=90%
        if key in GPU_METRICS:
            if not value:
                raise ConfigError(f"bad --slo {item!r}: write e.g. {key}<=90%")
            gpu[key] = _gpu_bound(key, value, item)
            continue
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
    return Slo(tuple(bounds[p] for p in sorted(bounds)), max_err, tuple(gpu.values()))
