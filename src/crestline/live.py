"""What the terminal shows: one line per interval, and the summary table at the end."""

from __future__ import annotations

import sys

from crestline.result import IntervalSnapshot


def _ms(ns: float) -> str:
    ms = ns / 1e6
    if ms >= 100:
        return f"{ms:.0f}ms"
    if ms >= 10:
        return f"{ms:.1f}ms"
    return f"{ms:.2f}ms"


class LiveLines:
    """Prints one plain line per interval to a stream (stderr by default)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self._header_done = False

    def interval(self, snap: IntervalSnapshot) -> None:
        if not self._header_done:
            print(f"{'elapsed':>8} {'offered/s':>10} {'achieved/s':>10} {'p50':>8} {'p99':>8} "
                  f"{'errors':>7} {'shed':>6} {'inflight':>8} {'send lag p99':>12}",
                  file=self.stream)
            self._header_done = True
        dur = snap.dur_s or float("nan")
        p50, p99 = snap.latency.values_at((50.0, 99.0))
        lag99 = snap.hists["send_lag"].values_at((99.0,))[0]
        label = "drain" if snap.drain else f"{snap.t_s:.1f}s"
        offered = "-" if snap.drain else f"{snap.scheduled / dur:.0f}"
        achieved = "-" if snap.drain else f"{snap.completed / dur:.0f}"
        print(f"{label:>8} {offered:>10} {achieved:>10} {_ms(p50):>8} {_ms(p99):>8} "
              f"{snap.errors:>7} {snap.shed:>6} {snap.inflight:>8} {_ms(lag99):>12}",
              file=self.stream, flush=True)


def summary_table(result: dict) -> str:
    """The end-of-run table, from the result dict (so reports can rebuild it from JSON)."""
    req = result["requests"]
    spec = result.get("spec", {})
    rows = [
        f"crestline run {result.get('url')}: {spec.get('arrival')} {result.get('target_rps'):g} rps "
        f"for {result['duration_s']:.1f}s, {spec.get('connections')} connections, "
        f"{spec.get('workers')} worker(s)" + ("  [interrupted]" if result.get("interrupted") else ""),
        "",
        f"{'':<16}{'p50':>10}{'p90':>10}{'p99':>10}{'p99.9':>10}{'max':>10}{'mean':>10}",
    ]
    for key, label in (("latency_ms", "latency ms"), ("service_ms", "service ms"),
                       ("send_lag_ms", "send lag ms"), ("schedule_lag_ms", "sched lag ms")):
        s = result[key]
        rows.append(f"{label:<16}" + "".join(
            f"{s[k]:>10.3f}" for k in ("p50", "p90", "p99", "p999", "max", "mean")))
    rows.append("")
    rows.append(
        f"requests  {req['scheduled']} scheduled, {req['sent']} sent, {req['ok']} ok, "
        f"{req['errors']} errors, {req['shed']} shed")
    rows.append(f"rate      offered {result['offered_rps']:.1f}/s, achieved {result['achieved_rps']:.1f}/s")
    if req["errors"]:
        kinds = ", ".join(f"{k} {v}" for k, v in req["by_error"].items() if v)
        rows.append(f"errors    {kinds}")
        for kind, msgs in req.get("error_messages", {}).items():
            for m in msgs:
                rows.append(f"          {kind}: {m}")
    for family, title in (("by_class", "by model/path"), ("by_size", "by body size")):
        classes = result.get(family)
        if classes:
            rows.append("")
            rows.append(f"latency ms {title:<20}{'requests':>10}{'p50':>10}{'p99':>10}"
                        f"{'p99.9':>10}{'max':>10}")
            for name, c in list(classes.items())[:12]:
                s = c["latency_ms"]
                rows.append(f"  {name[:29]:<29}{c['completed']:>10}{s['p50']:>10.3f}"
                            f"{s['p99']:>10.3f}{s['p999']:>10.3f}{s['max']:>10.3f}")
    rows.append("client    " + ("ok: kept to its schedule" if result["client_ok"] else
                                "NOT OK: " + "; ".join(result["client_problems"])))
    for w in result.get("warnings", []):
        rows.append(f"warning   {w}")
    return "\n".join(rows)


def search_step_line(number: int, step: dict, policy) -> str:
    """One line per finished search step: rate, verdict, percentiles, and the bracket."""
    lo, hi = policy.lo, policy.hi
    bracket = f"[{lo:,.0f} .. {hi:,.0f}]" if lo and hi else (
        f"[{lo:,.0f} .. ]" if lo else (f"[ .. {hi:,.0f}]" if hi else "[ .. ]"))
    lat = step["latency_ms"]
    warm = ""
    if number == 1 and policy.warmup_s:
        warm = f"  (warm after {policy.warmup_s:.0f} s)"
    return (f"step {number:>2} {step['phase']:<8} {step['rate_rps']:>10,.0f} rps  "
            f"{step['verdict']:<7} p50 {lat['p50']:.3g} ms  p99 {lat['p99']:.3g} ms  "
            f"{step['measured_s']:.0f}s  bracket {bracket}{warm}  {step['why']}")


def search_summary(result: dict) -> str:
    cap = result["capacity_rps"]
    lo, hi = result["bracket"]
    slo = ", ".join(f"{k} <= {v}" for k, v in result["slo"].items())
    lines = [""]
    if cap is None:
        lines.append(f"no rate met {slo}: {result['reason']}")
    else:
        width = f" (bracket {lo:,.0f} .. {hi:,.0f} rps)" if hi else ""
        lines.append(f"capacity {cap:,.0f} rps at {slo}{width}")
    lines.append(f"{'converged' if result['converged'] else 'NOT converged'}: "
                 f"{result['reason']}; {len(result['steps'])} steps, "
                 f"{result['load_s']:.0f} s of load; warm-up {result['warmup_s'] or 0:.0f} s")
    if result.get("warmup_note"):
        lines.append(f"warning: {result['warmup_note']}")
    return "\n".join(lines)
