"""GPU readings and their vocabulary: one poll of one device, the source interface every
telemetry source (NVML, dcgm-exporter) implements, throttle reasons and the window keys.

Imports no NVML or HTTP module: sources import their libraries when opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# Clock-event (throttle) reason bits, as NVML's nvmlClocksEventReason* constants define them
# and as DCGM reports them in DCGM_FI_DEV_CLOCKS_EVENT_REASONS. The NVML source builds the
# same table from pynvml's constants; a test holds the two equal.
THROTTLE_BITS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal",
    0x040: "hw_thermal",
    0x080: "hw_power_brake",
    0x100: "display_clocks",
}
# Reasons that mean the GPU is slowing itself to survive, not that it is idle or capped by
# policy: a measurement taken under them is not the server's normal capacity.
THERMAL_REASONS = frozenset({"sw_thermal", "hw_thermal", "hw_slowdown"})

# Window fields by how polls fold into a window and windows into a run or step: levels are
# averaged, peaks take the maximum (crestline.telemetry.recorder.summarize folds them the same way).
LEVEL_KEYS = ("util_pct", "mem_util_pct", "power_w", "sm_clock_mhz", "gr_active", "sm_active",
              "tensor_active")
PEAK_KEYS = ("util_max_pct", "mem_used_mib", "mem_total_mib", "temp_c")
WINDOW_KEYS = ("util_pct", "util_max_pct", "mem_util_pct", "mem_used_mib", "mem_total_mib",
               "power_w", "energy_j", "sm_clock_mhz", "temp_c", "gr_active", "sm_active",
               "tensor_active", "throttle", "xid", "samples")

class GpuUnavailable(Exception):
    """A whole telemetry source cannot work (no library, no driver, exporter unreachable,
    no such device). `reason` is one human line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class GpuReading:
    """One poll of one device. None: not supported, or failed this time.

    t_ns: time.monotonic_ns() when the device was read. util_pct, mem_util_pct: percent over
    the driver's last sample period. energy_mj: cumulative counter (mJ since driver load).
    throttle: names of active clock-event reasons. xid: XID errors seen since the previous
    poll. util_samples: the driver's high-rate utilisation samples since the previous poll,
    as (monotonic t_ns, percent). gr_active, sm_active, tensor_active: DCGM profiling ratios
    0..1.
    """

    t_ns: int
    util_pct: float | None = None
    mem_util_pct: float | None = None
    mem_used_mib: float | None = None
    mem_total_mib: float | None = None
    power_w: float | None = None
    energy_mj: float | None = None
    sm_clock_mhz: float | None = None
    temp_c: float | None = None
    throttle: list[str] | None = None
    xid: list[int] = field(default_factory=list)
    util_samples: list[tuple[int, float]] = field(default_factory=list)
    gr_active: float | None = None
    sm_active: float | None = None
    tensor_active: float | None = None


class Warnings(list):
    """Warning lines, each said once: a plain list[str] plus `once`."""

    def __init__(self) -> None:
        super().__init__()
        self._keys: set = set()

    def once(self, message: str, key=None) -> bool:
        """Append message unless this key (default: the message) was seen; True if added."""
        key = message if key is None else key
        if key in self._keys:
            return False
        self._keys.add(key)
        self.append(message)
        return True


class GpuSource(Protocol):
    """Where readings come from. `warnings` collects per-metric problems, each once."""

    name: str
    warnings: list[str]

    def open(self) -> list[dict]:
        """Devices as [{"id", "name", "uuid", "mem_total_mib"}]. Raises GpuUnavailable."""

    def poll(self) -> dict[str, GpuReading]:
        """One reading per device id. A failed or unsupported metric is None (and one
        warning), never an exception; raises GpuUnavailable only if the source is lost."""

    def close(self) -> None: ...


def decode_reasons(mask: int, bits: dict[int, str] = THROTTLE_BITS) -> list[str]:
    """Names of the set bits of a clock-event reason mask; unknown bits as hex ("0x200")."""
    names = [name for bit, name in bits.items() if mask & bit]
    rest = mask & ~sum(bits)
    names += [hex(1 << i) for i in range(rest.bit_length()) if rest >> i & 1]
    return names


def device_order(device_id: str) -> tuple:
    """Sort key for device ids: numeric ids in number order ("2" before "10"), others after."""
    return (0, int(device_id), "") if device_id.isdigit() else (1, 0, device_id)
