"""The report figures' drawing kit: colours, the Fig record, a matplotlib Figure made and
turned into inline SVG, log-ms axes, and the interval timeline with search steps shaded.

Used by crestline.report.figures (latency, rates, GPU) and crestline.report.stream_figures
(token streams). Matplotlib only through its object API, imported inside the functions, so
this module imports without it.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

from crestline.report.reader import timeline_s

PCT_COLORS = {"p50": "#1f77b4", "p90": "#17becf", "p99": "#ff7f0e", "p999": "#d62728"}
PCT_LABELS = {"p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9"}
VERDICT_COLORS = {"pass": "#2a9d4b", "fail": "#d1495b", "unsure": "#edae49",
                  "invalid": "#8d99ae", None: "#8d99ae"}
PHASE_MARKERS = {"bracket": "o", "refine": "s", "retest": "D", "confirm": "*"}
RC = {"svg.fonttype": "none", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
      "axes.spines.top": False, "axes.spines.right": False, "legend.fontsize": 8,
      "legend.frameon": False, "figure.dpi": 100}


@dataclass
class Fig:
    key: str       # stable id of the figure kind, e.g. "latency-vs-rate"
    caption: str
    svg: str       # an <svg> element, ready to inline


def figure(height_in: float = 3.2, rows: int = 1, cols: int = 1, **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, height_in), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)


def to_svg(fig, key: str) -> str:
    """The figure as an <svg> element: no XML prolog, no metadata (it names external URLs),
    ids prefixed by the figure's key so that several inline figures never share one."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": key}):  # fixed salt: the same input, same bytes
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\bid="', f'id="{key}-', svg)
    svg = re.sub(r'url\(#', f'url(#{key}-', svg)
    svg = re.sub(r'href="#', f'href="#{key}-', svg)
    # Scale with the column instead of a fixed size in points; the viewBox keeps the aspect.
    return re.sub(r'<svg ([^>]*?)width="[^"]*" height="[^"]*"',
                  r'<svg \1style="width:100%;height:auto" role="img"', svg, count=1)


def done(fig, key: str, caption: str) -> Fig:
    return Fig(key, caption, to_svg(fig, key))


def log_ms(ax) -> None:
    """Log scale with plain tick labels (0.5, 2, 20), not powers of ten."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(FuncFormatter(
        lambda v, _pos: f"{v:g}" if f"{v:g}"[0] in "25" else ""))


def positive(v) -> bool:
    return isinstance(v, (int, float)) and v > 0 and math.isfinite(v)


def series(result: dict):
    ivs = [iv for iv in result.get("intervals") or [] if isinstance(iv, dict)]
    if not ivs:
        return None, None
    return ivs, timeline_s(ivs, result.get("kind", "run"))


def shade_steps(ax, ivs: list[dict], ts: list[float]) -> None:
    """Tint alternate search steps' spans, so that the series reads step by step (needs
    intervals tagged with their step)."""
    spans: dict[int, list[float]] = {}
    for iv, t in zip(ivs, ts, strict=True):
        step = iv.get("step")
        if step is not None:
            span = spans.setdefault(step, [t - float(iv.get("dur_s") or 0), t])
            span[1] = t
    for k, (a, b) in spans.items():
        if k % 2:
            ax.axvspan(a, b, color="#888888", alpha=0.13, lw=0, zorder=0)


def time_label(result: dict) -> str:
    if result.get("kind") in ("search", "sweep"):
        intervals = result.get("intervals") or []
        if intervals and all(iv.get("elapsed_s") is not None for iv in intervals):
            return f"time since the {result['kind']} began (s)"
        return "load time (s; drains between steps left out)"
    return "time since load start (s)"


NINES_TICKS = {1: "0%", 10: "90%", 100: "99%", 1e3: "99.9%", 1e4: "99.99%", 1e5: "99.999%",
                1e6: "99.9999%"}
