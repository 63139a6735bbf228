"""What a recorded trace looks like as a workload: rate, burstiness, payload sizes and the mix
of paths and models. Pure (numpy); every field is defined in `docs/trace-format.md`."""

from __future__ import annotations

import re
from collections import Counter
from urllib.parse import unquote

import numpy as np

from crestline.trace.format import Trace, TraceRecord

TOP_N = 20
# Windows for the index of dispersion: 1 s when the trace spans at least this many seconds,
# else windows that hold ~_ARRIVALS_PER_WINDOW arrivals on average.
_MIN_SPAN_FOR_1S_WINDOWS_S = 10.0
_ARRIVALS_PER_WINDOW = 10.0
_MIN_WINDOWS = 5
_KSERVE_V2_RE = re.compile(r"^/v2/models/([^/?#]+)(?:[/?#]|$)")
_TF_SERVING_RE = re.compile(r"^/v1/models/([^/:?#]+)(?:/versions/[^/:?#]+|/labels/[^/:?#]+)?"
                            r":(?:predict|classify|regress)(?:[?#]|$)")


def model_of(rec: TraceRecord) -> str | None:
    """extras["model"] if the record has it, else the model named by a KServe v2 path
    (`/v2/models/<name>[/versions/<v>]/...`) or a TF-Serving path (`/v1/models/<name>:predict`),
    else None. Versions are not part of the name."""
    if rec.extras and isinstance(rec.extras.get("model"), str):
        return rec.extras["model"]
    m = _KSERVE_V2_RE.match(rec.path) or _TF_SERVING_RE.match(rec.path)
    return unquote(m.group(1)) if m else None


def _q(a: np.ndarray, p: float) -> float:
    # inverted_cdf: an observed value, the classic definition (no interpolation)
    return float(np.quantile(a, p, method="inverted_cdf"))


def _mix(counts: Counter, total: int, key: str) -> dict:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top = [{key: k, "count": c, "share": c / total} for k, c in ranked[:TOP_N]]
    rest = ranked[TOP_N:]
    other = None
    if rest:
        n = sum(c for _, c in rest)
        other = {"distinct": len(rest), "count": n, "share": n / total}
    return {"distinct": len(counts), "top": top, "other": other}


def index_of_dispersion(offsets_ns: np.ndarray) -> dict | None:
    """Variance / mean of arrival counts in equal windows over the trace: 1 for Poisson
    arrivals, > 1 bursty, < 1 smoother than Poisson (constant rate gives ~0). Windows of 1 s if
    the trace spans ≥ 10 s, else of ~10 arrivals on average. None with fewer than 5 windows."""
    n = len(offsets_ns)
    if n < 2:
        return None
    span_s = (int(offsets_ns[-1]) - int(offsets_ns[0])) / 1e9
    if span_s <= 0:
        return None
    if span_s >= _MIN_SPAN_FOR_1S_WINDOWS_S:
        window_s = 1.0
    else:
        window_s = _ARRIVALS_PER_WINDOW * span_s / (n - 1)
    windows = int(span_s // window_s)
    if windows < _MIN_WINDOWS:
        return None
    rel = (offsets_ns - offsets_ns[0]).astype(np.float64) / 1e9
    idx = (rel // window_s).astype(np.int64)
    counts = np.bincount(idx[idx < windows], minlength=windows)
    mean = counts.mean()
    if mean <= 0:
        return None
    return {"value": float(counts.var(ddof=1) / mean), "window_s": window_s, "windows": windows}


def describe(trace: Trace) -> dict:
    """The workload a trace holds, as plain values (JSON-ready): times in the unit named by the
    key, sizes in bytes. Fields that need two or more requests are None without them."""
    recs = trace.records
    n = len(recs)
    h = trace.header
    d: dict = {"source": h.get("source"), "base_url": h.get("base_url"),
               "created_unix_s": h.get("created_unix_s"), "count": n,
               "duration_s": trace.duration_s, "mean_rate_rps": None, "interarrival": None,
               "index_of_dispersion": None, "payload_bytes": None}
    if n == 0:
        return d
    off = trace.offsets_ns
    if n >= 2:
        gaps_ms = np.diff(off).astype(np.float64) / 1e6
        mean_ms = float(gaps_ms.mean())
        d["mean_rate_rps"] = 1e3 / mean_ms if mean_ms > 0 else None
        d["interarrival"] = {
            "mean_ms": mean_ms,
            "cv": float(gaps_ms.std() / mean_ms) if mean_ms > 0 else None,
            "p50_ms": _q(gaps_ms, 0.5), "p99_ms": _q(gaps_ms, 0.99)}
        d["index_of_dispersion"] = index_of_dispersion(off)
    sizes = np.fromiter((len(r.body) for r in recs), dtype=np.int64, count=n)
    d["payload_bytes"] = {"min": int(sizes.min()), "p50": int(_q(sizes, 0.5)),
                          "p90": int(_q(sizes, 0.9)), "p99": int(_q(sizes, 0.99)),
                          "max": int(sizes.max()), "mean": float(sizes.mean())}
    d["methods"] = dict(sorted(Counter(r.method for r in recs).items(),
                               key=lambda kv: (-kv[1], kv[0])))
    d["by_path"] = _mix(Counter(r.path.split("?", 1)[0] for r in recs), n, "path")
    models = Counter(model_of(r) for r in recs)
    unnamed = models.pop(None, 0)
    if models:
        d["by_model"] = _mix(models, n, "model")
        d["by_model"]["unnamed"] = {"count": unnamed, "share": unnamed / n} if unnamed else None
    return d


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def format_info(d: dict, name: str | None = None) -> str:
    """The output of describe() as lines for the terminal."""
    lines = []
    title = name or "trace"
    facts = [f"source {d['source']}" if d.get("source") else None,
             f"base URL {d['base_url']}" if d.get("base_url") else None]
    facts = [f for f in facts if f]
    lines.append(title + (f"  ({', '.join(facts)})" if facts else ""))
    n = d["count"]
    rate = d.get("mean_rate_rps")
    lines.append(f"  requests       {n:,} over {d['duration_s']:.3f} s"
                 + (f", mean rate {_num(rate)} rps" if rate else ""))
    ia = d.get("interarrival")
    if ia:
        cv = f", cv {ia['cv']:.2f} (1 = Poisson)" if ia["cv"] is not None else ""
        lines.append(f"  inter-arrival  mean {_num(ia['mean_ms'])} ms, p50 "
                     f"{_num(ia['p50_ms'])} ms, p99 {_num(ia['p99_ms'])} ms{cv}")
    disp = d.get("index_of_dispersion")
    if disp:
        lines.append(f"  dispersion     {disp['value']:.2f} over {disp['windows']:,} windows of "
                     f"{disp['window_s']:.3g} s (1 = Poisson, > 1 bursty)")
    elif n >= 2:
        lines.append("  dispersion     - (the trace is too short for 5 windows)")
    pb = d.get("payload_bytes")
    if pb:
        lines.append(f"  payload bytes  min {pb['min']:,}, p50 {pb['p50']:,}, p90 {pb['p90']:,}, "
                     f"p99 {pb['p99']:,}, max {pb['max']:,}, mean {pb['mean']:,.0f}")
    if d.get("methods"):
        lines.append("  methods        " + ", ".join(
            f"{m} {c:,} ({c / n:.1%})" for m, c in d["methods"].items()))
    for key, label in (("by_path", "paths"), ("by_model", "models")):
        mix = d.get(key)
        if not mix:
            continue
        col = "path" if key == "by_path" else "model"
        lines.append(f"  {label} ({mix['distinct']:,} distinct)")
        labels = [r[col] for r in mix["top"]] + ["(no model)" if mix.get("unnamed") else ""]
        if mix.get("other"):
            labels.append(f"({mix['other']['distinct']} others)")
        width = min(max(len(x) for x in labels), 60)
        for r in mix["top"]:
            lines.append(f"    {r[col]:<{width}}  {r['count']:>9,}  {r['share']:6.1%}")
        if mix.get("other"):
            o = mix["other"]
            lines.append(f"    {'(' + str(o['distinct']) + ' others)':<{width}}  "
                         f"{o['count']:>9,}  {o['share']:6.1%}")
        if mix.get("unnamed"):
            u = mix["unnamed"]
            lines.append(f"    {'(no model)':<{width}}  {u['count']:>9,}  {u['share']:6.1%}")
    return "\n".join(lines)
