"""Two results side by side, B's change against A in percent: before/after a model or server
change. Pure: reads result dicts (crestline.report.reader), never the engine.

Two searches compare capacity, latency at matched rates and GPU efficiency at capacity. Their
steps sit at different rates, so latency is compared at rates both searches measured around:
each search's passing and failing steps are interpolated (log latency, linear rate) at those
rates, never extrapolated. Two sweeps compare their SLO crossings and, at each rate of A's
ladder that B's ladder spans, latency (B interpolated the same way where its rates differ),
achieved rate and errors. Two runs compare rates, percentiles, errors and GPU figures.
"""

from __future__ import annotations

import math

from crestline.errors import ConfigError
from crestline.report.reader import discarded, kind_of
from crestline.slo.parse import slo_from_dict
from crestline.telemetry.recorder import efficiency_of

_PCTS = ("p50", "p99", "p999")


def _change_pct(a, b) -> float | None:
    if a is None or b is None or not a:
        return None
    return 100.0 * (b - a) / a


def _row(name: str, unit: str, a, b, better: str) -> dict:
    """better: 'higher' or 'lower', so a reader (and colour) can tell gain from loss."""
    return {"metric": name, "unit": unit, "a": a, "b": b, "change_pct": _change_pct(a, b),
            "better": better}


def _latency_at(steps: list[dict], rate: float, pct: str) -> float | None:
    """A search's latency percentile (ms) at `rate`, from its judged steps."""
    return _interpolated([(s["rate_rps"], s["latency_ms"].get(pct)) for s in steps
                          if s.get("verdict") in ("pass", "fail", "unsure")
                          and not discarded(s)], rate)


def _interpolated(points: list[tuple], rate: float) -> float | None:
    """The value (ms) at `rate`, interpolated between the two measured points around it (log
    latency, linear rate); None outside the measured range."""
    pts = sorted((r, v) for r, v in points if v)
    if not pts or rate < pts[0][0] or rate > pts[-1][0]:
        return None
    for (r0, v0), (r1, v1) in zip(pts, pts[1:], strict=False):
        if r0 <= rate <= r1:
            if r1 == r0:
                return max(v0, v1)
            w = (rate - r0) / (r1 - r0)
            return math.exp((1 - w) * math.log(v0) + w * math.log(v1))
    return pts[-1][1] if rate == pts[-1][0] else None


def _gpu_rows(ga: dict | None, gb: dict | None, where: str) -> list[dict]:
    if not ga and not gb:
        return []
    ga, gb = ga or {}, gb or {}
    return [_row(f"GPU util {where}", "%", ga.get("util_pct"), gb.get("util_pct"), "lower"),
            _row(f"GPU power {where}", "W", ga.get("power_w"), gb.get("power_w"), "lower"),
            _row(f"rps per GPU {where}", "rps", ga.get("rps_per_gpu"), gb.get("rps_per_gpu"),
                 "higher"),
            _row(f"rps per watt {where}", "rps/W", ga.get("rps_per_w"), gb.get("rps_per_w"),
                 "higher")]


def _compare_searches(a: dict, b: dict) -> list[dict]:
    rows = [_row("capacity", "rps", a.get("capacity_rps"), b.get("capacity_rps"), "higher")]
    caps = [c for c in (a.get("capacity_rps"), b.get("capacity_rps")) if c]
    # The rates to compare at: the lower capacity (where both should still pass) and half of it.
    rates = sorted({round(f * min(caps), 1) for f in (0.5, 1.0)}) if caps else []
    for rate in rates:
        for pct in _PCTS:
            va, vb = _latency_at(a["steps"], rate, pct), _latency_at(b["steps"], rate, pct)
            if va is not None or vb is not None:
                rows.append(_row(f"{pct} at {rate:,.0f} rps", "ms", va, vb, "lower"))
    rows += _gpu_rows(a.get("capacity_gpu"), b.get("capacity_gpu"), "at capacity")
    return rows


def _compare_sweeps(a: dict, b: dict) -> list[dict]:
    ca, cb = ((r.get("crossing") or {}).get("rate_rps") for r in (a, b))
    rows = [_row("SLO crossing", "rps", ca, cb, "higher")]
    by_rate_b = {row["rate_rps"]: row for row in b["rows"]}
    for ra in a["rows"]:
        rate, rb = ra["rate_rps"], by_rate_b.get(ra["rate_rps"])
        for pct in ("p50", "p99"):
            vb = _interpolated([(r["rate_rps"], r["latency_ms"].get(pct)) for r in b["rows"]],
                               rate)
            if vb is not None:
                rows.append(_row(f"{pct} at {rate:,.0f} rps", "ms", ra["latency_ms"].get(pct),
                                 vb, "lower"))
        if rb is not None:  # counts are not interpolated: only rates both ladders ran
            rows.append(_row(f"achieved at {rate:,.0f} rps", "rps", ra["achieved_rps"],
                             rb["achieved_rps"], "higher"))
            rows.append(_row(f"error rate at {rate:,.0f} rps", "%", 100.0 * ra["error_rate"],
                             100.0 * rb["error_rate"], "lower"))
    return rows


def _compare_runs(a: dict, b: dict) -> list[dict]:
    rows = [_row("offered", "rps", a.get("offered_rps"), b.get("offered_rps"), "higher"),
            _row("achieved", "rps", a.get("achieved_rps"), b.get("achieved_rps"), "higher")]
    for key, label in (("latency_ms", "latency"), ("service_ms", "service")):
        for pct in ("p50", "p90", "p99", "p999", "max"):
            rows.append(_row(f"{label} {pct}", "ms", a[key].get(pct), b[key].get(pct), "lower"))
    ra, rb = a["requests"], b["requests"]
    rows.append(_row("error rate", "%", 100.0 * ra["errors"] / max(ra["scheduled"], 1),
                     100.0 * rb["errors"] / max(rb["scheduled"], 1), "lower"))
    rows += _gpu_rows(*(efficiency_of((r.get("gpu") or {}).get("summary") or {},
                                      r.get("achieved_rps")) for r in (a, b)), "over the run")
    return rows


def _same_slo(a, b) -> bool:
    """The same bounds, however written (p99=25ms and p99=0.025s are one SLO)."""
    sa, sb = slo_from_dict(a), slo_from_dict(b)
    return sa == sb if sa is not None and sb is not None else a == b


def compare(a: dict, b: dict) -> dict:
    """{"kind", "rows": [{metric, unit, a, b, change_pct, better}], "notes"}.

    Raises ConfigError when the two results are of different kinds (a run and a search).
    """
    kind_a, kind_b = (kind_of(r) or "run" for r in (a, b))
    if kind_a != kind_b:
        raise ConfigError(f"cannot compare a {kind_a} with a {kind_b}: give two run results, "
                          "two search results or two sweep results")
    notes = []
    if a.get("url") != b.get("url"):
        notes.append(f"different targets: {a.get('url')} vs {b.get('url')}")
    if kind_a == "search":
        if not _same_slo(a.get("slo"), b.get("slo")):
            notes.append(f"different SLOs: {a.get('slo')} vs {b.get('slo')}")
        for name, r in (("A", a), ("B", b)):
            if not r.get("converged"):
                notes.append(f"{name} did not converge: {r.get('reason')}")
        rows = _compare_searches(a, b)
    elif kind_a == "sweep":
        if not _same_slo(a.get("slo"), b.get("slo")):
            notes.append(f"different SLOs: {a.get('slo')} vs {b.get('slo')}")
        for name, r in (("A", a), ("B", b)):
            if r.get("interrupted"):
                notes.append(f"{name} was interrupted: only its finished rows are compared")
            late = [f"{row['rate_rps']:g}" for row in r["rows"] if not row.get("client_ok", True)]
            if late:
                notes.append(f"{name}: the client fell behind at {', '.join(late)} rps; "
                             "latency there includes that")
            if r.get("crossing") is None:
                notes.append(f"{name} has no crossing: {r.get('crossing_note')}")
        rows = _compare_sweeps(a, b)
    else:
        rows = _compare_runs(a, b)
        for name, r in (("A", a), ("B", b)):
            if not r.get("client_ok", True):
                notes.append(f"{name}: the client fell behind its schedule; its latency "
                             "includes that")
    return {"kind": kind_a, "rows": rows, "notes": notes}


def _fmt(v, unit: str) -> str:
    if v is None:
        return "-"
    if unit in ("rps", "W"):
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def format_comparison(c: dict, name_a: str = "A", name_b: str = "B") -> str:
    """The comparison as a terminal table."""
    width = max(len(r["metric"]) + len(r["unit"]) + 3 for r in c["rows"])
    lines = [f"A = {name_a}", f"B = {name_b}", "",
             f"{'':<{width}}{'A':>12}{'B':>12}{'change':>10}"]
    for r in c["rows"]:
        ch = r["change_pct"]
        change = "-" if ch is None else f"{ch:+.1f}%"
        if ch is not None and abs(ch) >= 0.05:
            gained = (ch > 0) == (r["better"] == "higher")
            change += " better" if gained else " worse"
        label = f"{r['metric']} ({r['unit']})"
        lines.append(f"{label:<{width}}{_fmt(r['a'], r['unit']):>12}"
                     f"{_fmt(r['b'], r['unit']):>12}  {change}")
    for n in c["notes"]:
        lines.append(f"note: {n}")
    return "\n".join(lines)
