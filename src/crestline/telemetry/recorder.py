"""GPU telemetry for a run or a search: the sampler's lifecycle, one window per load interval,
and what the figures add up to (per run, per search step, at capacity).

The sampler (crestline.telemetry.sampler) polls on its own thread; this module only asks it,
once per interval on the event loop, for the aggregate of the polls inside that interval. The
summaries are pure functions of the per-interval windows, so reports can rebuild them from a result.
"""

from __future__ import annotations

import math

from crestline.errors import ConfigError
from crestline.telemetry.options import make_sampler
from crestline.telemetry.readings import LEVEL_KEYS, PEAK_KEYS


class GpuTelemetry:
    """A started sampler plus the per-interval bookkeeping of one run or search."""

    def __init__(self, option: str, period_s: float = 0.1):
        self.option = option
        self.sampler = make_sampler(option, period_s)  # ConfigError for bad text: before load

    @classmethod
    def for_slo(cls, option: str | None, period_s: float, slo) -> GpuTelemetry | None:
        """The telemetry `--gpu` asks for, or None; ConfigError if the SLO (an Slo or None)
        bounds GPU figures that nothing would measure."""
        if slo is not None and slo.gpu and not option:
            raise ConfigError(f"the SLO bounds GPU figures ({slo.describe()}): add --gpu nvml "
                              "or --gpu dcgm=URL so they can be measured")
        return cls(option, period_s) if option else None

    def start(self) -> list[str]:
        """Open the source and start polling; returns warnings (e.g. no driver: the run goes
        on without GPU figures)."""
        self.sampler.start()
        return list(self.sampler.warnings)

    def align(self, origin_ns: int, interval_ns: int) -> None:
        """Poll on the engine's interval grid from origin_ns (CLOCK_MONOTONIC)."""
        if self.sampler.available:
            self.sampler.align(origin_ns, interval_ns)

    def attach(self, snap) -> None:
        """Set snap.gpu to the figures polled during the interval (None without telemetry)."""
        if self.sampler.available and not snap.drain and snap.mono_end_ns:
            snap.gpu = self.sampler.window(snap.mono_start_ns, snap.mono_end_ns)

    def stop(self) -> None:
        self.sampler.stop()
        for dev, xids in self.sampler.unreported_xids().items():
            self.sampler.warnings.once(
                f"GPU {dev}: XID {', '.join(map(str, xids))} after the last load interval")

    def record(self, windows: list[dict | None], warnings: list[str]) -> dict:
        """The result's top-level `gpu` record over the given interval windows; the sampler's
        warnings that `warnings` (the result's) lacks are appended to it."""
        warnings += [w for w in self.sampler.warnings if w not in warnings]
        return {
            "source": self.sampler.source_name,
            "option": self.option,
            "devices": list(self.sampler.devices),
            "summary": summarize(windows),
            "warnings": list(self.sampler.warnings),
        }


def summarize(windows: list[dict | None]) -> dict:
    """{device id: figures} over several intervals' windows: means of levels (utilisation,
    power, clocks), maxima of memory and temperature, total energy, every throttle reason and
    XID seen. Fields no interval had stay None."""
    out: dict[str, dict] = {}
    for window in windows:
        for dev, fig in (window or {}).items():
            acc = out.setdefault(dev, {"_n": {}, "throttle": set(), "xid": [], "energy_j": None})
            for key in LEVEL_KEYS:
                v = fig.get(key)
                if v is not None:
                    acc[key] = acc.get(key, 0.0) + v
                    acc["_n"][key] = acc["_n"].get(key, 0) + 1
            for key in PEAK_KEYS:
                v = fig.get(key)
                if v is not None:
                    acc[key] = v if acc.get(key) is None else max(acc[key], v)
            if fig.get("energy_j") is not None:
                acc["energy_j"] = (acc["energy_j"] or 0.0) + fig["energy_j"]
            acc["throttle"].update(fig.get("throttle") or ())
            acc["xid"] += list(fig.get("xid") or ())
    for acc in out.values():
        for key, n in acc.pop("_n").items():
            acc[key] /= n
        for key in LEVEL_KEYS + PEAK_KEYS:
            acc.setdefault(key, None)
        acc["throttle"] = sorted(acc["throttle"])
    return out


def efficiency(windows: list[dict | None], achieved_rps: float | None) -> dict | None:
    """The GPU picture of a step: mean utilisation over the GPUs, total power, memory used,
    and requests per second per GPU and per watt. None without GPU figures."""
    return efficiency_of(summarize(windows), achieved_rps)


def efficiency_of(per_dev: dict, achieved_rps: float | None) -> dict | None:
    """efficiency over figures already folded per device (summarize's output, e.g. a run
    result's gpu summary). Power is a total only when every GPU reports it: a total over some
    of them would flatter rps per watt."""
    if not per_dev:
        return None
    utils = [d["util_pct"] for d in per_dev.values() if d.get("util_pct") is not None]
    powers = [d["power_w"] for d in per_dev.values() if d.get("power_w") is not None]
    mems = [d["mem_used_mib"] for d in per_dev.values() if d.get("mem_used_mib") is not None]
    power_w = sum(powers) if len(powers) == len(per_dev) else None
    rps = achieved_rps if achieved_rps is not None and math.isfinite(achieved_rps) else None
    return {
        "gpus": len(per_dev),
        "util_pct": sum(utils) / len(utils) if utils else None,
        "power_w": power_w,
        "mem_used_mib": sum(mems) if mems else None,
        "temp_c": max((d["temp_c"] for d in per_dev.values() if d.get("temp_c") is not None),
                      default=None),
        "throttle": sorted({r for d in per_dev.values() for r in d.get("throttle") or ()}),
        "rps_per_gpu": rps / len(per_dev) if rps is not None else None,
        "rps_per_w": rps / power_w if rps is not None and power_w else None,
        "devices": per_dev,
    }
