"""CPU figures that say whether the client, rather than the server, set the pace.

The engine reads its own process's CPU time at every interval boundary (`cpu_s`, summed over
worker processes when intervals merge); the session reads the whole host's busy time from
/proc/stat (`host_busy_s`). Their ratio to wall time is in cores. A client process is one
event loop on one core: near 1 core per process it is saturated, and whatever it measures
then includes its own delays. When the host is busier than the client alone, something else
(a server on the same host, a neighbour) competes with it for CPU, and a capacity measured
so holds only for that arrangement.
"""

from __future__ import annotations

import os

# A process busy for this share of the wall time is saturated: its loop has no idle turn left.
SATURATED_SHARE = 0.9
# The host's other work, in cores, above which the client is said to compete for CPU.
COMPETING_CORES = 0.5


def host_cores() -> int:
    """CPUs this process may run on (the affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class HostCpu:
    """Busy seconds of the whole host between calls, from /proc/stat (None where it cannot be
    read, e.g. not Linux)."""

    def __init__(self) -> None:
        self._tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        self._last = self._busy_ticks()

    def _busy_ticks(self) -> int | None:
        try:
            with open("/proc/stat", "rb") as f:
                fields = f.readline().split()[1:]
        except OSError:
            return None
        ticks = [int(x) for x in fields[:8]]
        # user nice system idle iowait irq softirq steal: idle and iowait are not busy
        return sum(ticks) - ticks[3] - ticks[4]

    def busy_s(self) -> float | None:
        """Host busy seconds (all CPUs added) since the previous call."""
        now = self._busy_ticks()
        last, self._last = self._last, now
        if now is None or last is None:
            return None
        return (now - last) * self._tick_s


def client_cpu_summary(snaps, workers: int, cores: int) -> dict | None:
    """The client's CPU over load intervals: {"mean_cores", "max_cores", "per_process",
    "host_busy_cores", "host_cores", "saturated", "competing"}; None without intervals.

    per_process: mean cores per client process (1.0 = one process busy all the time).
    saturated: some interval had every process busy >= SATURATED_SHARE of its wall time.
    competing: the host's other work averaged >= COMPETING_CORES while the client ran.
    """
    # One pass, holding no snapshot: a long run's older intervals are rebuilt from their
    # packed form as they are read (measure.result.Intervals), and a list of them all was
    # 6 KB an interval of peak memory at the run's end (+22 MB for an hour).
    wall_s = cpu_s = max_share = host_busy_s = host_wall_s = 0.0
    for snap in snaps:
        if snap.drain or not snap.dur_s > 0:
            continue
        wall_s += snap.dur_s
        cpu_s += snap.cpu_s
        max_share = max(max_share, snap.cpu_s / snap.dur_s)
        if snap.host_busy_s is not None:
            host_busy_s += snap.host_busy_s
            host_wall_s += snap.dur_s
    if not wall_s:  # no load interval (each counted one has dur_s > 0)
        return None
    mean = cpu_s / wall_s
    host_busy = host_busy_s / host_wall_s if host_wall_s else None
    others = None if host_busy is None else max(0.0, host_busy - mean)
    return {
        "mean_cores": round(mean, 3),
        "max_cores": round(max_share, 3),
        "per_process": round(mean / workers, 3),
        "host_busy_cores": None if host_busy is None else round(host_busy, 3),
        "host_cores": cores,
        "saturated": max_share / workers >= SATURATED_SHARE,
        "competing": others is not None and others >= COMPETING_CORES,
    }


def cpu_warnings(summary: dict | None) -> list[str]:
    """Lines for a result's warnings: a saturated client, a client sharing its host."""
    if not summary:
        return []
    lines = []
    if summary["saturated"]:
        lines.append(
            f"the client was CPU-bound (up to {summary['max_cores']:.2f} cores busy, "
            f"{summary['per_process']:.2f} per process on average): its own delays are in "
            "these figures; use --workers, --batch-window or a faster client host")
    if summary["competing"]:
        others = summary["host_busy_cores"] - summary["mean_cores"]
        lines.append(
            f"other processes used {others:.2f} of {summary['host_cores']} cores while the "
            f"client used {summary['mean_cores']:.2f}: a server on this host competes with the "
            "client for CPU, so figures measured here hold for this arrangement only")
    return lines
