"""GPU bounds: `gpu_util<=90%`, `gpu_mem<=70GiB` (or `<=90%` of the device), `gpu_power<=300W`,
`gpu_temp<=85C`.

An upper bound on a GPU figure over a run or a step, where the worst device counts:
utilisation and power are means over the intervals, memory and temperature maxima (as
crestline.telemetry.recorder.summarize folds them).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import ClassVar

from crestline.errors import ConfigError
from crestline.slo.bound import LEVEL, Bound, Pool, Term

# name -> (field of a crestline.telemetry.window figure, unit written)
GPU_METRICS = {
    "gpu_util": ("util_pct", "%"),
    "gpu_mem": ("mem_used_mib", "MiB"),  # or % of the device's memory
    "gpu_power": ("power_w", "W"),
    "gpu_temp": ("temp_c", "C"),
}
_EXAMPLES = {"gpu_util": "gpu_util<=90%", "gpu_mem": "gpu_mem<=70GiB or gpu_mem<=90%",
             "gpu_power": "gpu_power<=300W", "gpu_temp": "gpu_temp<=85C"}
_VALUE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(%|w|c|mib|gib|mb|gb)?$")


@dataclass(frozen=True)
class GpuBound(Bound):
    name: str  # gpu_util | gpu_mem | gpu_power | gpu_temp
    bound: float
    unit: str  # "%", "MiB", "W", "C"

    family: ClassVar[str] = LEVEL
    help: ClassVar[str] = "a GPU bound (gpu_util, gpu_mem, gpu_power, gpu_temp)"
    unmeasured: ClassVar[str] = "no GPU figures"

    @classmethod
    def claims(cls, key: str) -> bool:
        return key in GPU_METRICS

    @classmethod
    def missing_value(cls, key: str, item: str) -> ConfigError:
        return ConfigError(f"bad --slo {item!r}: write e.g. {key}<=90%")

    @classmethod
    def parse(cls, key: str, value: str, item: str) -> GpuBound:
        m = _VALUE_RE.match(value.lower())
        unit_written = GPU_METRICS[key][1]
        example = _EXAMPLES[key]
        if not m:
            raise ConfigError(f"bad --slo {item!r}: write e.g. {example}")
        number, unit = float(m.group(1)), (m.group(2) or "")
        if key == "gpu_mem" and number > 0:
            if unit == "%":
                return cls(key, number, "%")
            scale = {"gib": 1024.0, "gb": 1e9 / 2**20, "mib": 1.0, "mb": 1e6 / 2**20}.get(unit)
            if scale is None:
                raise ConfigError(f"bad --slo {item!r}: give gpu_mem in GiB, MiB or %, "
                                  f"e.g. {example}")
            return cls(key, number * scale, "MiB")
        if not number > 0:
            raise ConfigError(f"bad --slo {item!r}: the bound must be positive, e.g. {example}")
        if unit and unit != unit_written.lower():
            raise ConfigError(f"bad --slo {item!r}: {key} is in {unit_written}, e.g. {example}")
        if key == "gpu_util" and not 0 < number <= 100:
            raise ConfigError(f"bad --slo {item!r}: utilisation lies in (0, 100]%")
        return cls(key, number, unit_written)

    def text(self) -> str:
        return f"{self.bound:g}{self.unit}"

    def value(self, per_device: dict) -> float | None:
        """The worst device's figure from crestline.telemetry.recorder.summarize output, in
        self.unit; None where no device reported it."""
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

    def evaluate(self, pool: Pool) -> Term:
        value = self.value(pool.gpu)
        margin = None if value is None else math.log(max(value, 1e-9) / self.bound)
        return self.term(value, self.bound, self.unit,
                         "" if value is None else f"{value:.3g}{self.unit}", self.text(), margin)
