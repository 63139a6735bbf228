"""The shape of a search result, owned in one place: the policy builds it as the search ends,
reports rebuild it from a runlog cut short. Pure data, no state machine, so reports may
import it.
"""

from __future__ import annotations

# Kept at the start of a discarded step's `why` for people; programs read the step's
# `discarded` key (results written before it existed only have this prose).
DISCARDED_WHY = "discarded: the server was still warming up; "


def step_discarded(step: dict) -> bool:
    """A step the warm-up re-check set aside: its verdict counts for nothing."""
    if "discarded" in step:
        return bool(step["discarded"])
    return str(step.get("why", "")).startswith("discarded:")


def capacity_step(steps: list[dict], capacity_rps: float | None) -> int | None:
    """Position of the capacity step: the last pass at capacity_rps not discarded."""
    found = None
    for i, s in enumerate(steps):
        if capacity_rps is not None and s.get("rate_rps") == capacity_rps \
                and s.get("verdict") == "pass" and not step_discarded(s):
            found = i
    return found


def search_result(*, capacity_rps: float | None, converged: bool, reason: str, slo: dict,
                  bracket: list, warmup_s: float | None, warmup_note: str, load_s: float,
                  drain_s: float | None, client_ceiling_rps: float | None, config: dict,
                  steps: list[dict], capacity_ci_rps: list | None = None,
                  arrival: str | None = None, drift_note: str = "") -> dict:
    """A search's outcome: the `--out` JSON contract's search keys (docs/search.md), before
    the driver adds where and when it ran (url, spec, intervals, ...). Rates in rps, times in
    load-seconds. capacity_gpu is the capacity step's GPU picture; capacity_ci_rps the
    interval [low, high] around it (None when unknown); arrival the arrival process the
    capacity holds for; drift_note, when set, why the target was found changing speed."""
    cap_i = capacity_step(steps, capacity_rps)
    return {
        "kind": "search",
        "capacity_rps": capacity_rps,
        "capacity_ci_rps": capacity_ci_rps,
        "arrival": arrival,
        "converged": converged,
        "reason": reason,
        "slo": slo,
        "bracket": bracket,
        "warmup_s": warmup_s,
        "warmup_note": warmup_note,
        "drift_note": drift_note,
        "load_s": load_s,
        "drain_s": drain_s,
        "client_ceiling_rps": client_ceiling_rps,
        "config": config,
        "capacity_gpu": steps[cap_i].get("gpu") if cap_i is not None else None,
        "steps": steps,
    }
