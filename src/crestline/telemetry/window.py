"""Folding polls into windows on the engine's interval grid, and reading a window's trouble.

Times are int nanoseconds on CLOCK_MONOTONIC. After `align`, polls fall at the mid-points of
equal sub-intervals, so an interval's last poll is done half a poll period before it closes.
"""

from __future__ import annotations

import math
from itertools import pairwise

from crestline.telemetry.readings import (
    LEVEL_KEYS,
    PEAK_KEYS,
    THERMAL_REASONS,
    WINDOW_KEYS,
    GpuReading,
    device_order,
)


def polls_per_interval(interval_ns: int, period_ns: int) -> int:
    """How many equal poll slots an interval holds: the nearest whole number to
    interval/period, at least 1, so the poll period divides the interval exactly."""
    return max(1, round(interval_ns / period_ns))


def next_poll_ns(now_ns: int, origin_ns: int, interval_ns: int, per_interval: int) -> int:
    """The first poll time after now_ns on the grid origin + (k + 1/2) * interval/per_interval
    (k any integer), in exact integer nanoseconds."""
    twice = 2 * per_interval

    def at(k: int) -> int:
        return origin_ns + (2 * k + 1) * interval_ns // twice

    k = ((now_ns - origin_ns) * twice // interval_ns - 1) // 2
    while at(k) <= now_ns:
        k += 1
    while at(k - 1) > now_ns:
        k -= 1
    return at(k)


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _present(readings: list[GpuReading], name: str) -> list[float]:
    return [v for r in readings if (v := getattr(r, name)) is not None]


def _samples_cover(times_ns: list[int], start_ns: int, seen_until_ns: int) -> bool:
    """Whether sorted high-rate sample times cover [start_ns, seen_until_ns) with no gap
    longer than a quarter of the window or twice their median spacing, whichever is longer.
    A driver may stop sampling an idle GPU: samples from the busy part of a window alone would
    overstate its utilisation, and the polled rate is the better figure then."""
    spacing = sorted(b - a for a, b in pairwise(times_ns))
    limit = max((seen_until_ns - start_ns) / 4, 2 * spacing[len(spacing) // 2] if spacing else 0)
    edges = [start_ns, *times_ns, seen_until_ns]
    return max(b - a for a, b in pairwise(edges)) <= limit


def aggregate_window(readings: list[GpuReading], start_ns: int, end_ns: int,
                     before: GpuReading | None = None) -> dict:
    """The window figures of one device from its readings with start_ns <= t_ns < end_ns.

    before: the device's last reading before start_ns, if recent; it anchors the energy
    counter so that consecutive windows' energy tiles the run. power_w comes from the energy
    counter's slope over the readings when the counter works (W = mJ/ms), else it is the mean
    of polled power; energy_j is that slope times the window's length (None without a
    counter). util_pct and util_max_pct come from the driver's high-rate samples falling in
    the window when they cover it (_samples_cover), else from the polled rate. Fields nothing
    reported are None.
    """
    high_rate = sorted(s for r in readings for s in r.util_samples if start_ns <= s[0] < end_ns)
    # Samples reach us only at polls: the window is seen up to its last poll.
    seen_until_ns = max([r.t_ns for r in readings] + [t for t, _ in high_rate[-1:]], default=0)
    if high_rate and _samples_cover([t for t, _ in high_rate], start_ns, seen_until_ns):
        util = [v for _, v in high_rate]
    else:
        util = _present(readings, "util_pct")
    polled = {k: _mean(_present(readings, k)) for k in LEVEL_KEYS if k != "util_pct"}
    polled |= {k: max(_present(readings, k), default=None) for k in PEAK_KEYS
               if k != "util_max_pct"}
    polled |= {"util_pct": _mean(util), "util_max_pct": max(util) if util else None,
               "energy_j": None, "throttle": None, "xid": [x for r in readings for x in r.xid],
               "samples": len(readings)}
    out = {k: polled[k] for k in WINDOW_KEYS}  # the documented field order
    counted = [r for r in ([before] if before else []) + readings if r.energy_mj is not None]
    if len(counted) >= 2:
        first, last = counted[0], counted[-1]
        span_ns = last.t_ns - first.t_ns
        # Only a counter that rose at every poll measures this window: one that went backwards
        # was reset (driver reload), and one that stood still is refreshed more slowly than we
        # poll (dcgm-exporter's -c, 30 s by default), which would read 0 W in most windows and
        # the stored-up energy in a few. Then the polled power stands.
        live = all(b.energy_mj > a.energy_mj for a, b in pairwise(counted))
        if span_ns > 0 and live:
            out["power_w"] = (last.energy_mj - first.energy_mj) * 1e6 / span_ns
            out["energy_j"] = out["power_w"] * (end_ns - start_ns) / 1e9
    reasons = [r.throttle for r in readings if r.throttle is not None]
    if reasons:
        out["throttle"] = sorted(set().union(*reasons))
    return out


def guard_trouble(window: dict | None) -> str | None:
    """One line naming every device in a window that throttled for heat or raised an XID
    ("GPU 0: thermal throttling (hw_thermal); GPU 1: XID 79"), or None if none did."""
    troubles = []
    for dev in sorted(window or {}, key=device_order):
        fig = window[dev] or {}
        hot = [r for r in fig.get("throttle") or () if r in THERMAL_REASONS]
        if hot:
            troubles.append(f"GPU {dev}: thermal throttling ({', '.join(hot)})")
        if fig.get("xid"):
            troubles.append(f"GPU {dev}: XID {', '.join(str(x) for x in fig['xid'])}")
    return "; ".join(troubles) or None
