"""What each member of a distributed pool did in one interval, and what went wrong with it.

Pure: interval snapshots in, figures and fault lines out. A fault names the member; it makes
a run's client_ok false and a search step invalid (docs/distributed.md, "Faults").
"""

from __future__ import annotations

from crestline.measure.result import IntervalSnapshot

# An actor is behind its schedule, not merely late, past this schedule-lag p99 in an interval
# (or a tenth of the interval, when longer): lesser lateness shows in the merged schedule lag,
# which a run's client check and a search's step verdict judge as for one host.
BEHIND_LAG_NS = 100_000_000
BEHIND_SHARE = 0.1


def behind_lag_ns(interval_s: float) -> int:
    return max(BEHIND_LAG_NS, int(BEHIND_SHARE * interval_s * 1e9))


def member_figures(name: str, snap: IntervalSnapshot, clock: dict | None) -> dict:
    """One member's own figures for one interval (ms where a time)."""
    lat99, = snap.hists["latency"].values_at((99.0,)) if "latency" in snap.hists else (0,)
    lag99, = snap.hists["schedule_lag"].values_at((99.0,)) if "schedule_lag" in snap.hists \
        else (0,)
    return {"member": name, "scheduled": snap.scheduled, "sent": snap.sent,
            "completed": snap.completed, "errors": snap.errors, "shed": snap.shed,
            "latency_p99_ms": lat99 / 1e6, "schedule_lag_p99_ms": lag99 / 1e6,
            "cpu_s": round(snap.cpu_s, 6), "clock": clock}


def member_faults(parts: dict[str, IntervalSnapshot], behind_ns: int) -> list[str]:
    """Faults in one interval, from each member's part: {name: snapshot}."""
    faults = []
    anyone_completed = any(p.completed for p in parts.values())
    for name, p in parts.items():
        lag, = p.hists["schedule_lag"].values_at((99.0,)) if "schedule_lag" in p.hists else (0,)
        if lag > behind_ns:
            faults.append(f"{name} fell behind its schedule (schedule lag p99 {lag / 1e6:.0f} "
                          f"ms, over {behind_ns / 1e6:.0f} ms)")
        connect = p.by_error.get("connect", 0)
        # Lost its target: nothing came back to it while it failed to connect and others were
        # served. Every member failing alike is the server's doing, judged as such.
        if connect and not p.completed and anyone_completed:
            faults.append(f"{name} lost its target ({connect} connect errors, no response "
                          "while the other members were served)")
    return faults
