"""The HTML report's token-stream figures: TTFT and ITL against the rate with goodput (a
search's steps, a sweep's rows), TTFT, ITL and tokens/s over time, and the TTFT/ITL/TPOT
percentile spectra. Drawn with crestline.report.plot like crestline.report.figures; each
builder returns None when the result did not stream, so other results get none of them.
"""

from __future__ import annotations

from crestline.report.plot import NINES_TICKS as _NINES_TICKS
from crestline.report.plot import VERDICT_COLORS, Fig
from crestline.report.plot import done as _done
from crestline.report.plot import figure as _figure
from crestline.report.plot import log_ms as _log_ms
from crestline.report.plot import positive as _positive
from crestline.report.plot import series as _series
from crestline.report.plot import shade_steps as _shade_steps
from crestline.report.plot import time_label as _time_label
from crestline.report.reader import capacity_and_failure
from crestline.slo.parse import slo_from_dict

# One colour per stream time, apart from the latency percentiles' colours.
STREAM_COLORS = {"ttft": "#1f77b4", "itl": "#9467bd", "tpot": "#8c564b"}
STREAM_LABELS = {"ttft": "TTFT", "itl": "ITL", "tpot": "TPOT"}
GOODPUT_COLOR = "#2a9d4b"


def stream_bounds(result: dict, hist_name: str) -> tuple:
    """The SLO's percentile bounds on one stream histogram ("ttft", "itl", "tpot")."""
    slo = slo_from_dict(result.get("slo"))
    return slo.tail_bounds(hist_name) if slo else ()


def _bound_lines(ax, result: dict, names=("ttft", "itl")) -> None:
    for name in names:
        for b in stream_bounds(result, name):
            ax.axhline(b.bound_ms, color=STREAM_COLORS[name], ls="--", lw=1,
                       label=f"SLO {b.name} ≤ {b.bound_ms:g} ms")


def _points(result: dict) -> list[dict]:
    """A search's steps or a sweep's rows that streamed, by rate."""
    key = "rows" if result.get("kind") == "sweep" else "steps"
    return sorted((p for p in result.get(key) or [] if isinstance(p, dict)
                   and _positive(p.get("rate_rps")) and p.get("stream")),
                  key=lambda p: p["rate_rps"])


def stream_vs_rate(result: dict) -> Fig | None:
    """TTFT p50/p99 and ITL p99 per step or row against the offered rate (log ms) with the
    SLO's stream bounds; below, goodput (rps, and % of the requests that ended)."""
    pts = _points(result)
    if not pts or result.get("kind") not in ("search", "sweep"):
        return None
    sweep = result["kind"] == "sweep"
    fig, axes = _figure(5.0, 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top, bottom = axes[0][0], axes[1][0]
    rates = [p["rate_rps"] for p in pts]
    for name, pct, style in (("ttft", "p50", ".-"), ("ttft", "p99", "o-"),
                             ("itl", "p99", "s-")):
        vals = [(p.get(f"{name}_ms") or {}).get(pct) for p in pts]
        xy = [(r, v) for r, v in zip(rates, vals, strict=True) if _positive(v)]
        if xy:
            top.plot([a for a, _ in xy], [b for _, b in xy], style, ms=4, lw=1.1,
                     color=STREAM_COLORS[name], alpha=0.55 if pct == "p50" else 1.0,
                     label=f"{STREAM_LABELS[name]} {pct}")
    _bound_lines(top, result)
    _log_ms(top)
    top.set_ylabel("time (ms)")
    top.legend(loc="upper left")
    good = [p["stream"].get("goodput_rps") for p in pts]
    bottom.plot(rates, rates, "--", color="grey", lw=0.8, label="every request good")
    bottom.plot(rates, good, "o-", color=GOODPUT_COLOR, ms=4, label="goodput (rps)")
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("goodput (rps)")
    bottom.set_xlabel("offered rate (rps)")
    frac = [p["stream"].get("goodput_fraction") for p in pts]
    if any(f is not None for f in frac):
        twin = bottom.twinx()
        twin.plot(rates, [None if f is None else 100 * f for f in frac], "^:", ms=4,
                  color="#555555", label="goodput (%)")
        twin.set_ylim(0, 105)
        twin.set_ylabel("goodput (% of requests)")
        twin.grid(False)
        twin.spines["right"].set_visible(True)
        twin.legend(loc="lower right")
    bottom.legend(loc="upper left")
    mark = ((result.get("crossing") or {}).get("rate_rps") if sweep
            else result.get("capacity_rps"))
    if _positive(mark):
        for ax in (top, bottom):
            ax.axvline(mark, color="black", lw=1, ls=":" if sweep else "-")
    what = "row of the sweep" if sweep else "search step"
    line = "the crossing (dotted)" if sweep else "the capacity found (vertical line)"
    return _done(fig, "sweep-stream" if sweep else "stream-vs-rate",
                 f"Token streams per {what} against the offered rate: time to first token "
                 "(TTFT p50, p99, from the intended send) and inter-token latency (ITL p99; ms, "
                 "log scale) with the SLO's stream bounds (dashed); below, goodput: requests "
                 f"per second that met every per-request bound, and their share; {line}.")


def stream_series(result: dict) -> Fig | None:
    """Per interval: TTFT p50/p99 and ITL p99 (log ms), and output tokens per second."""
    ivs, ts = _series(result)
    if not ivs:
        return None
    rows = [(t, iv["stream"]) for t, iv in zip(ts, ivs, strict=True)
            if isinstance(iv.get("stream"), dict) and not iv.get("drain")]
    if not rows:
        return None
    fig, axes = _figure(4.4, 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top, bottom = axes[0][0], axes[1][0]
    for name, pct, style in (("ttft", "p50", ".-"), ("ttft", "p99", ".-"),
                             ("itl", "p99", ".-")):
        xy = [(t, (st.get(f"{name}_ms") or {}).get(pct)) for t, st in rows]
        xy = [p for p in xy if _positive(p[1])]
        if xy:
            top.plot([a for a, _ in xy], [b for _, b in xy], style, ms=3, lw=1,
                     color=STREAM_COLORS[name], alpha=0.55 if pct == "p50" else 1.0,
                     label=f"{STREAM_LABELS[name]} {pct}")
    _bound_lines(top, result)
    _shade_steps(top, ivs, ts)
    _log_ms(top)
    top.set_ylabel("time (ms)")
    top.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=5)
    tok = [(t, st.get("output_tokens_per_s")) for t, st in rows]
    tok = [p for p in tok if p[1] is not None]
    bottom.plot([a for a, _ in tok], [b for _, b in tok], "-", color="#e377c2", lw=1.2,
                drawstyle="steps-pre")
    _shade_steps(bottom, ivs, ts)
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("output tokens/s")
    bottom.set_xlabel(_time_label(result))
    return _done(fig, "stream-series",
                 "Token streams per interval: TTFT p50 and p99 (from the intended send) and "
                 "ITL p99 (ms, log scale) with the SLO's stream bounds, and below them the "
                 "output tokens per second the server streamed.")


def stream_distribution(result: dict) -> Fig | None:
    """HDR percentile spectra of TTFT, ITL and TPOT: the run's, or a search's capacity step's
    and first failing step's TTFT and ITL."""
    series = []
    if result.get("kind") == "search":
        steps = result.get("steps") or []
        for i in capacity_and_failure(result):
            if i is None:
                continue
            s = steps[i]
            dist = s.get("stream_distribution_ms") or {}
            for name in ("ttft", "itl"):
                if dist.get(name):
                    series.append((f"{STREAM_LABELS[name]}, step {i + 1}: "
                                   f"{s['rate_rps']:,.0f} rps, {s.get('verdict')}", dist[name],
                                   VERDICT_COLORS.get(s.get("verdict")),
                                   "-" if name == "ttft" else "--"))
    elif result.get("kind") != "sweep":
        dist = result.get("stream_distribution_ms") or {}
        series = [(STREAM_LABELS[n], dist[n], STREAM_COLORS[n], "-")
                  for n in ("ttft", "itl", "tpot") if dist.get(n)]
    if not series:
        return None
    fig, axes = _figure(3.4)
    ax = axes[0][0]
    xmax = 10.0
    for label, dist, color, ls in series:
        pts = [(1.0 / (1.0 - p / 100.0), ms) for p, ms in dist if p < 100.0]
        pts = [p for p in pts if _positive(p[1])]
        top = max((ms for _, ms in dist), default=0.0)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".", ls=ls, color=color, lw=1.4,
                ms=4, label=f"{label} (max {top:.3g} ms)")
        xmax = max([xmax] + [p[0] for p in pts])
    for name in ("ttft", "itl", "tpot"):
        for b in stream_bounds(result, name):
            x = 1.0 / b.tail
            ax.plot([x], [b.bound_ms], "v", color=STREAM_COLORS[name], ms=7,
                    label=f"SLO {b.name} ≤ {b.bound_ms:g} ms")
            xmax = max(xmax, x)
    ax.set_xscale("log")
    ticks = [t for t in _NINES_TICKS if t <= xmax * 1.01]
    ax.set_xticks(ticks, [_NINES_TICKS[t] for t in ticks])
    ax.minorticks_off()
    _log_ms(ax)
    ax.set_xlabel("percentile (log scale of 1 / (1 − p): one tick per nine)")
    ax.set_ylabel("time (ms)")
    ax.legend(loc="upper left", fontsize=7)
    what = ("the capacity step and the first failing step above it (TTFT solid, ITL dashed)"
            if result.get("kind") == "search" else "the whole run")
    return _done(fig, "stream-distribution",
                 f"HDR percentile distributions of the token-stream times for {what}: time "
                 "to first token from the intended send, every inter-token gap, time per "
                 "output token per request (ms); triangles mark the SLO's stream bounds.")
