"""The HTML report's figures: matplotlib, drawn from a result dict into inline SVG.

Pure readers like crestline.report. Matplotlib is imported only here and only through its
object API (`matplotlib.figure.Figure`): pyplot would switch the process's global backend,
which is not ours to change when the report is made from a user's own Python session.

Every builder takes the result dict and returns a `Fig` or None when its data is absent, so a
result from an older crestline, a run without GPU telemetry or a search without per-step
distributions simply has fewer figures.
"""

from __future__ import annotations

from crestline.report.plot import NINES_TICKS as _NINES_TICKS
from crestline.report.plot import PCT_COLORS, PCT_LABELS, PHASE_MARKERS, VERDICT_COLORS, Fig
from crestline.report.plot import RC as _RC
from crestline.report.plot import done as _done
from crestline.report.plot import figure as _figure
from crestline.report.plot import log_ms as _log_ms
from crestline.report.plot import positive as _positive
from crestline.report.plot import series as _series
from crestline.report.plot import shade_steps as _shade_steps
from crestline.report.plot import time_label as _time_label
from crestline.report.reader import capacity_and_failure, search_bracket
from crestline.report.stream_figures import stream_distribution, stream_series, stream_vs_rate
from crestline.slo.parse import slo_from_dict


def figures(result: dict) -> list[Fig]:
    """Every figure the result has data for, in report order. Raises ImportError without
    matplotlib (crestline.report.html turns that into a ConfigError)."""
    import matplotlib

    # the token-stream figures (report.stream_figures) each follow their latency counterpart
    first = {"search": [_latency_vs_rate, stream_vs_rate, _trajectory, _gpu_vs_rate],
             "sweep": [_sweep_curve, stream_vs_rate]}.get(result.get("kind"), [])
    builders = first + [_rates_series, _latency_series, stream_series, _gpu_series] + (
        [] if result.get("kind") == "sweep" else [_distribution, stream_distribution,
                                                  _classes])
    out: list[Fig] = []
    with matplotlib.rc_context(_RC):
        for build in builders:
            made = build(result)
            out.extend(m for m in (made if isinstance(made, list) else [made]) if m is not None)
    return out


def latency_bounds(result: dict) -> tuple:
    """The SLO's percentile bounds on latency (what a latency axis can show), read back from
    the result's `slo` by the evaluator's own parser; () when it has none or cannot be read."""
    slo = slo_from_dict(result.get("slo"))
    return slo.tail_bounds("latency") if slo else ()


def _slo_lines(ax, result: dict) -> None:
    for b in latency_bounds(result):
        ax.axhline(b.bound_ms, color=PCT_COLORS.get(b.name, "black"), ls="--", lw=1,
                   label=f"SLO {b.name} ≤ {b.bound_ms:g} ms")


def _steps(result: dict) -> list[dict]:
    return [s for s in result.get("steps") or [] if isinstance(s, dict) and "rate_rps" in s]


# -- search ------------------------------------------------------------------------------------
def _latency_vs_rate(result: dict) -> Fig | None:
    steps = _steps(result)
    if not steps:
        return None
    fig, axes = _figure(3.6)
    ax = axes[0][0]
    drawn = False
    for key in ("p50", "p99", "p999"):
        pts = sorted((s["rate_rps"], (s.get("latency_ms") or {}).get(key), s.get("verdict"))
                     for s in steps)
        pts = [p for p in pts if _positive(p[1])]
        if not pts:
            continue
        drawn = True
        color = PCT_COLORS[key]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, lw=0.8, alpha=0.5)
        passed = [p for p in pts if p[2] == "pass"]
        other = [p for p in pts if p[2] != "pass"]
        ax.scatter([p[0] for p in passed], [p[1] for p in passed], color=color, s=22,
                   label=f"{PCT_LABELS[key]}", zorder=3)
        ax.scatter([p[0] for p in other], [p[1] for p in other], facecolors="none",
                   edgecolors=color, s=22, zorder=3)
    if not drawn:
        return None
    _slo_lines(ax, result)
    cap = result.get("capacity_rps")
    if _positive(cap):
        ax.axvline(cap, color="black", lw=1, label=f"capacity {cap:,.0f} rps")
    _log_ms(ax)
    ax.set_xlabel("offered rate (rps)")
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper left")
    return _done(fig, "latency-vs-rate",
                 "Latency percentiles per step against the offered rate (filled: the step "
                 "passed; hollow: it failed or stayed unsure), with the SLO bounds (dashed) and "
                 "the capacity found (vertical line).")


def _sweep_curve(result: dict) -> Fig | None:
    """A sweep's latency-throughput curve: percentiles per row against the offered rate (log
    y) with the SLO bounds and the crossing, and below it achieved against offered."""
    rows = sorted((r for r in result.get("rows") or [] if isinstance(r, dict)
                   and _positive(r.get("rate_rps"))), key=lambda r: r["rate_rps"])
    if not rows:
        return None
    fig, axes = _figure(5.2, 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top, bottom = axes[0][0], axes[1][0]
    rates = [r["rate_rps"] for r in rows]
    drawn = False
    for key in ("p50", "p90", "p99", "p999"):
        pts = [(r["rate_rps"], (r.get("latency_ms") or {}).get(key), r.get("slo_met"))
               for r in rows]
        pts = [p for p in pts if _positive(p[1])]
        if not pts:
            continue
        drawn = True
        color = PCT_COLORS[key]
        top.plot([p[0] for p in pts], [p[1] for p in pts], ".-", color=color, lw=1.2, ms=5,
                 label=PCT_LABELS[key])
        missed = [p for p in pts if p[2] is False]
        top.scatter([p[0] for p in missed], [p[1] for p in missed], facecolors="white",
                    edgecolors=color, s=30, zorder=3)
    if not drawn:
        return None
    _slo_lines(top, result)
    cross = result.get("crossing") if isinstance(result.get("crossing"), dict) else None
    if cross and _positive(cross.get("rate_rps")):
        rate = cross["rate_rps"]
        if cross.get("interpolated"):
            label = f"{cross.get('term')} crossing ~{rate:,.0f} rps (interpolated)"
            top.axvline(rate, color="black", ls=":", lw=1.2, label=label)
            bound = next((b.bound_ms for b in latency_bounds(result)
                          if b.name == cross.get("term")), None)
            if bound is not None:
                top.plot([rate], [bound], "x", color="black", ms=9, mew=2, zorder=4)
            top.annotate("interpolated", (rate, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(4, -12), textcoords="offset points", fontsize=8)
        else:
            top.axvline(rate, color="black", lw=0.8, alpha=0.5,
                        label=f"SLO met up to {rate:,.0f} rps (the top rate)")
    _log_ms(top)
    top.set_ylabel("latency (ms)")
    top.legend(loc="upper left")
    bottom.plot(rates, rates, "--", color="grey", lw=0.8, label="achieved = offered")
    bottom.plot(rates, [r.get("achieved_rps") for r in rows], "o-", color="#2a9d4b", ms=4,
                label="achieved")
    bottom.plot(rates, [r.get("offered_rps") for r in rows], "s", color="#555555", ms=3,
                label="offered (realised schedule)")
    if cross and cross.get("interpolated"):
        bottom.axvline(cross["rate_rps"], color="black", ls=":", lw=1.2)
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("offered rate (rps)")
    bottom.set_ylabel("rate (rps)")
    bottom.legend(loc="upper left")
    return _done(fig, "sweep-curve",
                 "Latency percentiles per rate of the sweep against the offered rate (ms, log "
                 "scale; hollow: the row missed the SLO), the SLO bounds (dashed) and the "
                 "crossing: interpolated between the two rows around it, not measured at that "
                 "rate (dotted line, x). Below: achieved and offered rate against the rate "
                 "asked for.")


def _trajectory(result: dict) -> Fig | None:
    steps = _steps(result)
    if not steps:
        return None
    fig, axes = _figure(3.2)
    ax = axes[0][0]
    n = list(range(1, len(steps) + 1))
    los, his = [], []
    for k in range(len(steps)):
        lo, hi = search_bracket(steps[:k + 1])
        los.append(lo)
        his.append(hi)
    rates = [s["rate_rps"] for s in steps]
    top = max(rates) * 1.08
    lo_y = [v if v is not None else 0.0 for v in los]
    hi_y = [v if v is not None else top for v in his]
    ax.fill_between(n, lo_y, hi_y, step="post", color="#999999", alpha=0.15,
                    label="bracket [lo, hi] after the step")
    ax.plot(n, rates, color="#555555", lw=0.8)
    for verdict, color in VERDICT_COLORS.items():
        if verdict is None:
            continue
        for phase, marker in PHASE_MARKERS.items():
            pts = [(i, s["rate_rps"]) for i, s in zip(n, steps, strict=True)
                   if s.get("verdict") == verdict and s.get("phase") == phase]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=color,
                           marker=marker, s=40 if marker == "*" else 26, zorder=3,
                           label=f"{verdict} ({phase})")
    cap = result.get("capacity_rps")
    if _positive(cap):
        ax.axhline(cap, color="black", lw=1, ls="--", label=f"capacity {cap:,.0f} rps")
    ax.set_xlim(0.5, len(steps) + 0.5)
    ax.set_ylim(0, top)
    ax.set_xticks(n if len(n) <= 30 else n[::max(1, len(n) // 15)])
    ax.set_xlabel("step")
    ax.set_ylabel("offered rate (rps)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _done(fig, "trajectory",
                 "Search trajectory: the rate of each step, coloured by verdict (green pass, "
                 "red fail, amber unsure, grey invalid; the marker is the phase), and the "
                 "bracket narrowing around the capacity (shaded).")


def _gpu_vs_rate(result: dict) -> Fig | None:
    pts = sorted((s["rate_rps"], s["gpu"]) for s in _steps(result)
                 if isinstance(s.get("gpu"), dict))
    if not pts:
        return None
    fig, axes = _figure(3.0, 1, 2)
    left, right = axes[0]
    rates = [p[0] for p in pts]
    left.plot(rates, [p[1].get("util_pct") for p in pts], "o-", color="#1f77b4", ms=4)
    left.set_ylabel("GPU utilisation (%)")
    left.set_ylim(0, 105)
    power = [p[1].get("power_w") for p in pts]
    if any(_positive(v) for v in power):
        twin = left.twinx()
        twin.plot(rates, power, "s--", color="#d62728", ms=4, label="power (W)")
        twin.set_ylim(bottom=0)
        twin.set_ylabel("power (W)")
        twin.grid(False)
        twin.spines["right"].set_visible(True)
    left.set_xlabel("offered rate (rps)")
    per_w = [p[1].get("rps_per_w") for p in pts]
    right.plot(rates, per_w, "o-", color="#2a9d4b", ms=4)
    right.set_xlabel("offered rate (rps)")
    right.set_ylabel("requests per second per watt (rps/W)")
    cap = result.get("capacity_rps")
    if _positive(cap):
        for ax in (left, right):
            ax.axvline(cap, color="black", lw=1)
    return _done(fig, "gpu-vs-rate",
                 "GPU per step: utilisation (%, circles) and power (W, squares) against the "
                 "offered rate, and requests per second per watt (rps/W); the vertical line is "
                 "the capacity.")


# -- both ------------------------------------------------------------------------------------------
def _rates_series(result: dict) -> Fig | None:
    ivs, ts = _series(result)
    if not ivs:
        return None
    fig, axes = _figure(3.0)
    ax = axes[0][0]
    load = [(t, iv) for t, iv in zip(ts, ivs, strict=True) if not iv.get("drain")]
    for key, label, style in (("offered_rps", "offered", "-"), ("achieved_rps", "achieved", "-")):
        pts = [(t, iv.get(key)) for t, iv in load if iv.get(key) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, lw=1.2, label=label,
                    drawstyle="steps-pre")
    target = [(t, iv.get("rate_rps")) for t, iv in load if iv.get("rate_rps") is not None]
    if target:
        ax.plot([p[0] for p in target], [p[1] for p in target], "--", color="black", lw=0.8,
                label="step rate", drawstyle="steps-pre")
    _shade_steps(ax, ivs, ts)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(_time_label(result))
    ax.set_ylabel("rate (rps)")
    ax.legend(loc="lower right")
    return _done(fig, "rates",
                 "Offered and achieved rate per interval (requests per second): offered counts "
                 "the slots scheduled, achieved the responses completed.")


def _latency_series(result: dict) -> Fig | None:
    ivs, ts = _series(result)
    if not ivs:
        return None
    fig, axes = _figure(4.2, 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top, bottom = axes[0][0], axes[1][0]
    for key in ("p50", "p99", "p999"):
        pts = [(t, (iv.get("latency_ms") or {}).get(key), bool(iv.get("drain")))
               for t, iv in zip(ts, ivs, strict=True)]
        pts = [p for p in pts if _positive(p[1])]
        load = [p for p in pts if not p[2]]
        if load:
            top.plot([p[0] for p in load], [p[1] for p in load], ".-", ms=3, lw=1,
                     color=PCT_COLORS[key], label=PCT_LABELS[key])
        # The drain holds the stragglers of the last interval, often a handful: a point of its
        # own rather than the end of the line, so it does not read as a trend.
        drain = [p for p in pts if p[2]]
        if drain:
            top.scatter([p[0] for p in drain], [p[1] for p in drain], facecolors="none",
                        edgecolors=PCT_COLORS[key], s=24, zorder=3,
                        label="drain" if key == "p999" else None)
    _slo_lines(top, result)
    _shade_steps(top, ivs, ts)
    _log_ms(top)
    top.set_ylabel("latency (ms)")
    top.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=6)
    lag = [(t, (iv.get("send_lag_ms") or {}).get("p99"), bool(iv.get("drain")))
           for t, iv in zip(ts, ivs, strict=True)]
    lag = [p for p in lag if p[1] is not None]
    bottom.plot([p[0] for p in lag if not p[2]], [p[1] for p in lag if not p[2]], ".-", ms=3,
                lw=1, color="#6a3d9a")
    bottom.scatter([p[0] for p in lag if p[2]], [p[1] for p in lag if p[2]], s=24,
                   facecolors="none", edgecolors="#6a3d9a", zorder=3)
    bottom.set_ylabel("send lag p99 (ms)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel(_time_label(result))
    return _done(fig, "latency-series",
                 "Latency per interval (p50, p99, p99.9, from the intended send time; ms, log "
                 "scale) with the SLO bounds, and below it the send lag p99 (ms): how late "
                 "requests went onto the wire. Hollow points: the drain after the load.")


def _gpu_series(result: dict) -> Fig | None:
    ivs, ts = _series(result)
    if not ivs:
        return None
    per_dev: dict[str, dict[str, list]] = {}
    for t, iv in zip(ts, ivs, strict=True):
        for dev, m in (iv.get("gpu") or {}).items():
            if not isinstance(m, dict):
                continue
            d = per_dev.setdefault(str(dev), {})
            for key in ("util_pct", "power_w", "mem_used_mib", "mem_total_mib"):
                if isinstance(m.get(key), (int, float)):
                    d.setdefault(key, []).append((t, m[key]))
    panels = [(k, lab) for k, lab in (("util_pct", "utilisation (%)"), ("power_w", "power (W)"),
                                      ("mem_used_mib", "memory used (MiB)"))
              if any(k in d for d in per_dev.values())]
    if not panels:
        return None
    fig, axes = _figure(1.0 + 1.6 * len(panels), len(panels), 1, sharex=True)
    for (key, label), row in zip(panels, axes, strict=True):
        ax = row[0]
        for dev, d in sorted(per_dev.items()):
            pts = d.get(key) or []
            ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.1, label=f"GPU {dev}")
            if key == "mem_used_mib" and d.get("mem_total_mib"):
                ax.axhline(d["mem_total_mib"][-1][1], ls=":", lw=0.8, color="grey")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
    axes[0][0].legend(loc="upper left", ncols=4)
    axes[-1][0].set_xlabel(_time_label(result))
    return _done(fig, "gpu-series",
                 "GPU telemetry per interval and device: utilisation (%), power draw (W) and "
                 "memory used (MiB; dotted: the device's total).")


def _distribution(result: dict) -> Fig | None:
    series = []
    if result.get("kind") == "search":
        steps = result.get("steps") or []
        for i in capacity_and_failure(result):
            if i is not None and steps[i].get("distribution_ms"):
                s = steps[i]
                series.append((f"step {i + 1}: {s['rate_rps']:,.0f} rps, {s.get('verdict')}",
                               s["distribution_ms"], VERDICT_COLORS.get(s.get("verdict"))))
    elif result.get("latency_distribution_ms"):
        series.append(("run", result["latency_distribution_ms"], PCT_COLORS["p50"]))
    if not series:
        return None
    fig, axes = _figure(3.4)
    ax = axes[0][0]
    xmax, values = 10.0, []
    for label, dist, color in series:
        pts = [(1.0 / (1.0 - p / 100.0), ms) for p, ms in dist if p < 100.0]
        top = max((ms for _, ms in dist), default=0.0)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-", color=color, lw=1.4, ms=4,
                label=f"{label} (max {top:.3g} ms)")
        xmax = max([xmax] + [p[0] for p in pts])
        values += [p[1] for p in pts if p[1] > 0]
    for b in latency_bounds(result):
        x = 1.0 / b.tail
        ax.plot([x], [b.bound_ms], "v", color="black", ms=7,
                label=f"SLO {b.name} ≤ {b.bound_ms:g} ms")
        ax.hlines(b.bound_ms, 1, x, colors="black", linestyles=":", lw=0.8)
        xmax = max(xmax, x)
    ax.set_xscale("log")
    ticks = [t for t in _NINES_TICKS if t <= xmax * 1.01]
    ax.set_xticks(ticks, [_NINES_TICKS[t] for t in ticks])
    ax.minorticks_off()
    if values and max(values) / min(values) > 100:
        _log_ms(ax)
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlabel("percentile (log scale of 1 / (1 − p): one tick per nine)")
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="lower right")
    what = ("the capacity step and the first failing step above it" if result.get("kind")
            == "search" else "the whole run")
    return _done(fig, "distribution",
                 f"HDR percentile distribution of latency for {what} (ms); triangles mark "
                 "the SLO bounds.")


def _classes(result: dict) -> list[Fig]:
    """Per-class latency bars: a run's own classes, or a search's capacity step's."""
    source, where = result, "the run"
    if result.get("kind") == "search":
        cap_i = capacity_and_failure(result)[0]
        if cap_i is None:
            return []
        source = result["steps"][cap_i]
        where = f"the capacity step ({source['rate_rps']:,.0f} rps)"
    out = []
    for family, title in (("by_class", "model/path"), ("by_size", "body size")):
        classes = source.get(family)
        if not isinstance(classes, dict) or not classes:
            continue
        items = sorted(classes.items(), key=lambda kv: -kv[1].get("completed", 0))[:12]
        fig, axes = _figure(0.9 + 0.32 * len(items) * 2)
        ax = axes[0][0]
        ys = range(len(items))
        for j, key in enumerate(("p50", "p99")):
            vals = [(c.get("latency_ms") or {}).get(key) or 0 for _, c in items]
            ax.barh([y + j * 0.4 for y in ys], vals, height=0.38, color=PCT_COLORS[key],
                    label=PCT_LABELS[key])
        ax.set_yticks([y + 0.2 for y in ys], [f"{n[:32]} ({c.get('completed', 0):,})"
                                              for n, c in items])
        ax.invert_yaxis()
        ax.set_xlabel("latency (ms)")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
        out.append(_done(fig, f"classes-{family.replace('_', '-')}",
                         f"Latency by {title} in {where}: p50 and p99 (ms); the number of "
                         "completed requests in brackets."))
    return out
