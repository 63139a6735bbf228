"""One self-contained HTML report of a run or a search: header, tables, inline SVG figures.

A pure reader like crestline.report.reader: the result dict in, one file out. The file loads nothing
(no external URL, no script, no web font): it can be mailed, attached to a ticket or opened
offline years later. Its only varying text is the run's own: nothing records when the report
was made, so the same result gives the same bytes.

    from crestline.report import html as report_html
    from crestline.report import reader as report
    result, contents = report.load_with_runlog("search.runlog")
    report_html.write_html(result, "search.html", runlog_contents=contents)
"""

from __future__ import annotations

import html
import os

from crestline.errors import ConfigError
from crestline.measure.runlog import RunlogContents
from crestline.report.reader import capacity_and_failure, fill_from_runlog, started_utc
from crestline.slo.parse import slo_text

NEED_MPL = "the HTML report needs matplotlib: pip install 'crestline[html]'"

_CSS = """
:root { color-scheme: light; --muted: #5b6470; --line: #d8dde3; --ok: #1d7a3a; --bad: #b3261e; }
body { margin: 0; background: #fff; color: #1b1f24;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 24px 20px 64px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 36px 0 8px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; }
h3 { font-size: 1rem; margin: 20px 0 6px; }
.verdict { font-size: 1.25rem; font-weight: 600; margin: 4px 0 12px; }
.ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: #9a6700; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.meta dt { color: var(--muted); } dl.meta dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9rem; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { font-weight: 600; background: #f5f7f9; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; }
figure { margin: 20px 0 28px; }
figcaption { color: var(--muted); font-size: 0.9rem; margin-top: 4px; }
ul.warn li { color: var(--bad); }
tr.capacity { background: #eef7f0; }
tr.detail td { color: var(--muted); font-size: 0.82rem; padding-top: 0; padding-left: 3.2em; }
tr:has(+ tr.detail) td { border-bottom: none; }
"""


def write_html(result: dict, out_path: str | os.PathLike,
               runlog_contents: RunlogContents | None = None) -> None:
    """Write the report of `result` (from crestline.report.reader) to out_path.

    runlog_contents (from report.load_with_runlog) fills what the result lacks: intervals,
    distributions. Raises ConfigError without matplotlib (the `html` extra), or when out_path
    cannot be written.
    """
    full = fill_from_runlog(result, runlog_contents)
    try:
        from crestline.report.figures import figures
        figs = figures(full)
    except ImportError as exc:
        if "matplotlib" in str(exc) or (exc.name or "").startswith("matplotlib"):
            raise ConfigError(NEED_MPL) from None
        raise
    doc = render(full, figs)
    try:
        with open(out_path, "w", encoding="utf-8") as f:
            f.write(doc)
    except OSError as exc:
        raise ConfigError(f"cannot write the HTML report to {out_path}: {exc.strerror}") from None


def render(result: dict, figs: list) -> str:
    """The HTML document as a string, from a result and its figures (report_figures.Fig)."""
    kind = _kind_word(result)
    title = f"crestline {kind}: {result.get('url')}"
    body = [_header(result)]
    body += {"search": _search_tables, "sweep": _sweep_tables}.get(kind, _run_tables)(result)
    body.append(_warnings(result))
    if figs:
        body.append("<h2>Figures</h2>")
        for fig in figs:
            body.append(f'<figure id="fig-{fig.key}">{fig.svg}'
                        f"<figcaption>{_e(fig.caption)}</figcaption></figure>")
    body += _class_tables(result)
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(b for b in body if b) + "\n</main>\n</body>\n</html>\n")


# -- pieces ------------------------------------------------------------------------------------
def _e(v) -> str:
    return html.escape("" if v is None else str(v))


def _fmt(v, unit: str = "") -> str:
    """Numbers for tables: thousands separators, 3 significant digits below 1000."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:
            return "–"
        text = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
        return text + unit
    return _e(v)


def _table(headers: list[str], rows: list[list], classes: list[str] | None = None,
           words: tuple[int, ...] = (0,), details: list[str] | None = None) -> str:
    """A table of numbers, right-aligned, except the columns listed in `words`; `details`
    adds under each row a full-width line of text (already escaped)."""
    def cell(tag: str, i: int, v) -> str:
        cls = "" if i in words else ' class="num"'
        return f"<{tag}{cls}>{v}</{tag}>"
    head = "".join(cell("th", i, _e(h)) for i, h in enumerate(headers))
    out = [f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>']
    for k, row in enumerate(rows):
        cls = f' class="{classes[k]}"' if classes and classes[k] else ""
        out.append(f"<tr{cls}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
        if details and details[k]:
            out.append(f'<tr class="detail{" " + classes[k] if classes else ""}">'
                       f'<td colspan="{len(headers)}">{details[k]}</td></tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


def _header(result: dict) -> str:
    search = result.get("kind") == "search"
    spec = result.get("spec") or {}
    slo = slo_text(result.get("slo"), le="≤")
    if search:
        cap = result.get("capacity_rps")
        bracket = result.get("bracket")
        lo, hi = bracket if isinstance(bracket, list) and len(bracket) == 2 else (None, None)
        verdict = (f"capacity {cap:,.0f} rps" + (f" at {slo}" if slo else "")
                   if cap is not None else f"no rate met {slo or 'the SLO'}")
        tone = "bad" if cap is None else ("ok" if result.get("converged") else "warn")
        detail = (f"{'converged' if result.get('converged') else 'not converged'}: "
                  f"{result.get('reason')}")
        if lo is not None and hi is not None:
            detail += f"; bracket {lo:,.0f} .. {hi:,.0f} rps"
    elif result.get("kind") == "sweep":
        verdict, tone, detail = _sweep_verdict(result)
    else:
        met = result.get("slo_met")
        verdict = ("SLO met" if met else "SLO missed") if met is not None else \
            f"{result.get('achieved_rps') or 0:,.1f} rps achieved"
        tone = "ok" if met is not False and result.get("client_ok", True) else "bad"
        detail = (f"{spec.get('arrival', '')} {_fmt(result.get('target_rps'))} rps for "
                  f"{_fmt(result.get('duration_s'))} s")
    meta = [("URL", result.get("url")), ("started", started_utc(result) or "unknown"),
            ("kind", result.get("kind")), ("SLO", slo or "none"), ("result", detail),
            ("traffic", _traffic(spec)), ("crestline", result.get("crestline"))]
    gpu = _gpu_devices_text(result)
    if gpu:
        meta.append(("GPU", gpu))
    if result.get("interrupted"):
        meta.append(("note", "interrupted: the results cover only what ran"))
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta if v is not None)
    return (f"<header><h1>crestline {_kind_word(result)}</h1>"
            f'<p class="verdict {tone}">{_e(verdict)}</p>'
            f'<dl class="meta">{rows}</dl></header>')


def _traffic(spec: dict) -> str:
    parts = [f"{spec['arrival']} arrivals" if spec.get("arrival") else "",
             f"{spec['connections']} connections" if spec.get("connections") else "",
             (f"requests drawn from the trace {os.path.basename(spec['trace'])}"
              if spec.get("trace") else
              f"{spec.get('method', 'GET')} {spec.get('body_bytes') or 0} B body"),
             f"timeout {spec['timeout_s']:g} s" if spec.get("timeout_s") else "",
             f"{spec['workers']} worker(s)" if spec.get("workers") else ""]
    return ", ".join(p for p in parts if p)


def _gpu_devices_text(result: dict) -> str:
    gpu = result.get("gpu") if isinstance(result.get("gpu"), dict) else {}
    devices = gpu.get("devices") or []
    names = [f"{d.get('id')}: {d.get('name', '?')}" for d in devices if isinstance(d, dict)]
    cap_gpu = result.get("capacity_gpu")
    if isinstance(cap_gpu, dict):
        names.append("at capacity: " + ", ".join(
            f"{_unit_label(k)} {_fmt(v)}" for k, v in cap_gpu.items()
            if isinstance(v, (int, float))))
    return "; ".join(names)


def _run_tables(result: dict) -> list[str]:
    out = ["<h2>Summary</h2>", "<h3>Latency and lags</h3>"]
    rows = []
    for key, label in (("latency_ms", "latency"), ("service_ms", "service time"),
                       ("send_lag_ms", "send lag"), ("schedule_lag_ms", "schedule lag")):
        s = result.get(key)
        if isinstance(s, dict):
            rows.append([label] + [_fmt(s.get(k)) for k in
                                   ("p50", "p90", "p99", "p999", "max", "mean")])
    out.append(_table(["histogram", "p50 (ms)", "p90 (ms)", "p99 (ms)", "p99.9 (ms)",
                       "max (ms)", "mean (ms)"], rows))
    req = result.get("requests") or {}
    out.append("<h3>Requests and rates</h3>")
    out.append(_table(
        ["scheduled (count)", "sent (count)", "completed (count)", "ok (count)",
         "errors (count)", "shed (count)"],
        [[_fmt(req.get(k)) for k in ("scheduled", "sent", "completed", "ok", "errors", "shed")]],
        words=()))
    out.append(_table(
        ["target (rps)", "offered (rps)", "achieved (rps)", "load window (s)", "client ok"],
        [[_fmt(result.get(k)) for k in ("target_rps", "offered_rps", "achieved_rps",
                                         "duration_s", "client_ok")]], words=()))
    by_error = {k: v for k, v in (req.get("by_error") or {}).items() if v}
    if by_error:
        msgs = req.get("error_messages") or {}
        out.append("<h3>Errors</h3>")
        out.append(_table(["kind", "count", "first messages"],
                          [[_e(k), _fmt(v), _e("; ".join(msgs.get(k, [])))]
                           for k, v in by_error.items()], words=(0, 2)))
    out += _stream_tables(result)
    if result.get("slo_why"):
        out.append("<h3>SLO check</h3><ul>" + "".join(
            f"<li>{_e(w)}</li>" for w in result["slo_why"]) + "</ul>")
    out += _gpu_summary(result)
    return out


_STREAM_TIMES = (("ttft_ms", "time to first token (TTFT)"),
                 ("ttft_sent_ms", "TTFT from the actual send"), ("itl_ms", "inter-token (ITL)"),
                 ("tpot_ms", "time per output token (TPOT)"), ("e2e_ms", "end to end"))
# A search step's or a sweep row's stream columns: (header, value of the step or row).
_STREAM_COLUMNS = (
    ("TTFT p99 (ms)", lambda d: (d.get("ttft_ms") or {}).get("p99")),
    ("ITL p99 (ms)", lambda d: (d.get("itl_ms") or {}).get("p99")),
    ("tokens/s", lambda d: (d.get("output_tokens") or {}).get("per_s")),
    ("goodput (%)", lambda d: None if (d.get("stream") or {}).get("goodput_fraction") is None
     else 100.0 * d["stream"]["goodput_fraction"]),
)


def _stream_tables(result: dict) -> list[str]:
    """A run's token streams: each time's percentiles, then tokens, goodput and how tokens
    were counted (docs/measurement.md, "Token streams"). [] when nothing streamed."""
    st = result.get("stream")
    if not isinstance(st, dict):
        return []
    rows = [[label] + [_fmt((result.get(key) or {}).get(k)) for k in
                       ("p50", "p90", "p99", "p999", "max", "mean")]
            for key, label in _STREAM_TIMES if isinstance(result.get(key), dict)]
    tok = result.get("output_tokens") or {}
    good = st.get("goodput_fraction")
    return ["<h3>Token streams</h3>",
            _table(["time", "p50 (ms)", "p90 (ms)", "p99 (ms)", "p99.9 (ms)", "max (ms)",
                    "mean (ms)"], rows),
            _table(["output tokens (count)", "tokens/s", "per request p50 (count)",
                    "streams (count)", "goodput (rps)", "goodput (%)", "counted by usage",
                    "usage ≠ events", "no [DONE]", "reasoning tokens"],
                   [[_fmt(tok.get("total")), _fmt(tok.get("per_s")),
                     _fmt((tok.get("per_request") or {}).get("p50")), _fmt(st.get("streams")),
                     _fmt(st.get("goodput_rps")), _fmt(None if good is None else 100.0 * good),
                     _fmt(st.get("usage_counted")), _fmt(st.get("usage_mismatch")),
                     _fmt(st.get("no_done")), _fmt(st.get("reasoning_tokens"))]], words=())]


def _stream_columns(points: list[dict]) -> tuple[list[str], object]:
    """(headers, cells of one step or row) for the stream columns; none if nothing streamed."""
    if not any(isinstance(p.get("stream"), dict) for p in points):
        return [], lambda d: []
    return ([h for h, _ in _STREAM_COLUMNS],
            lambda d: [_fmt(f(d)) for _, f in _STREAM_COLUMNS])


def _gpu_summary(result: dict) -> list[str]:
    summary = ((result.get("gpu") or {}).get("summary") or {})
    if not isinstance(summary, dict) or not summary:
        return []
    keys: list[str] = []
    for m in summary.values():
        for k, v in (m or {}).items():
            if isinstance(v, (int, float, str)) and k not in keys:
                keys.append(k)
    rows = [[_e(dev)] + [_fmt((m or {}).get(k)) for k in keys] for dev, m in summary.items()]
    where = "search" if result.get("kind") == "search" else "run"
    return [f"<h3>GPU over the {where}</h3>", _table(["device"] + [_unit_label(k) for k in keys],
                                                 rows)]


_SUFFIX_UNITS = (("_pct", "%"), ("_mib", "MiB"), ("_mhz", "MHz"), ("_w", "W"), ("_c", "°C"),
                 ("_rps", "rps"), ("_s", "s"), ("_ms", "ms"))


def _unit_label(key: str) -> str:
    """'power_w' -> 'power (W)', 'rps_per_w' -> 'rps per W': units out of the key's suffix."""
    if key.startswith("rps_per_"):
        return "rps per " + {"w": "W", "gpu": "GPU"}.get(key[8:], key[8:])
    for suffix, unit in _SUFFIX_UNITS:
        if key.endswith(suffix):
            return f"{key[:-len(suffix)].replace('_', ' ')} ({unit})"
    return key.replace("_", " ")


def _search_tables(result: dict) -> list[str]:
    steps = result.get("steps") or []
    cap_i, fail_i = capacity_and_failure(result)
    gpu_keys = [k for k in ("util_pct", "power_w", "rps_per_w")
                if any(isinstance(s.get("gpu"), dict) and k in s["gpu"] for s in steps)]
    headers = ["step", "phase", "rate (rps)", "verdict", "achieved (rps)", "p50 (ms)",
               "p99 (ms)", "p99.9 (ms)", "errors (%)", "measured (s)"] + \
        [f"GPU {_unit_label(k)}" for k in gpu_keys]
    stream_heads, stream_cells = _stream_columns(steps)
    headers += stream_heads
    rows, classes, whys = [], [], []
    for i, s in enumerate(steps):
        lat = s.get("latency_ms") or {}
        err = s.get("error_rate")
        gpu = s.get("gpu") if isinstance(s.get("gpu"), dict) else {}
        rows.append([str(i + 1), _e(s.get("phase")), _fmt(s.get("rate_rps")),
                     _verdict(s.get("verdict")), _fmt(s.get("achieved_rps")), _fmt(lat.get("p50")),
                     _fmt(lat.get("p99")), _fmt(lat.get("p999")),
                     _fmt(None if err is None else 100.0 * err), _fmt(s.get("measured_s"))]
                    + [_fmt(gpu.get(k)) for k in gpu_keys] + stream_cells(s))
        whys.append(_e(s.get("why")))
        classes.append(" ".join(c for c in (s.get("verdict") or "",
                                            "capacity" if i == cap_i else "",
                                            "first-fail" if i == fail_i else "") if c))
    table = _table(headers, rows, classes, words=(1, 3), details=whys)
    load = (f"{_fmt(result.get('load_s'))} s of load, warm-up {_fmt(result.get('warmup_s'))} s, "
            f"drains {_fmt(result.get('drain_s'))} s")
    return ["<h2>Summary</h2>", f"<p>{len(steps)} steps; {_e(load)}. The capacity step is "
            "highlighted.</p>", table] + _gpu_summary(result)


def _kind_word(result: dict) -> str:
    kind = result.get("kind")
    return kind if kind in ("search", "sweep") else "run"


def _sweep_verdict(result: dict) -> tuple[str, str, str]:
    """(verdict, tone, detail) of a sweep's header: the crossing, or why there is none."""
    cross = result.get("crossing") if isinstance(result.get("crossing"), dict) else None
    rows = result.get("rows") or []
    if cross and cross.get("interpolated"):
        verdict = f"crossing ~{cross['rate_rps']:,.0f} rps (interpolated)"
        tone = "warn"
    elif cross:
        verdict, tone = f"SLO met at every rate, up to {cross['rate_rps']:,.0f} rps", "ok"
    elif result.get("slo"):
        verdict, tone = "no crossing", "bad"
    else:
        verdict, tone = f"{len(rows)} rates swept", "ok"
    detail = (f"{len(rows)} of {len(result.get('rates_rps') or [])} rates, "
              f"{_fmt(result.get('step_s'))} s each; {result.get('crossing_note') or ''}")
    return verdict, tone, detail.rstrip("; ")


def _sweep_tables(result: dict) -> list[str]:
    rows = result.get("rows") or []
    cross = result.get("crossing") if isinstance(result.get("crossing"), dict) else {}
    between = cross.get("between") or []
    headers = ["rate (rps)", "offered (rps)", "achieved (rps)", "p50 (ms)", "p90 (ms)",
               "p99 (ms)", "p99.9 (ms)", "max (ms)", "errors (%)", "client ok", "SLO met"]
    stream_heads, stream_cells = _stream_columns(rows)
    headers += stream_heads
    out, classes, whys = [], [], []
    for r in rows:
        lat = r.get("latency_ms") or {}
        out.append([_fmt(r.get("rate_rps")), _fmt(r.get("offered_rps")),
                    _fmt(r.get("achieved_rps"))]
                   + [_fmt(lat.get(k)) for k in ("p50", "p90", "p99", "p999", "max")]
                   + [_fmt(100.0 * (r.get("error_rate") or 0.0)), _fmt(r.get("client_ok")),
                      _verdict({True: "pass", False: "fail"}.get(r.get("slo_met")))]
                   + stream_cells(r))
        classes.append("capacity" if r.get("rate_rps") in between[:1] else "")
        terms = [f"{t['name']} {_fmt(t.get('value'))} {t.get('unit', '')} vs "
                 f"{_fmt(t.get('bound'))} {t.get('unit', '')}" for t in r.get("terms") or []]
        whys.append(_e("; ".join(terms + list(r.get("client_problems") or []))))
    load = (f"{_fmt(result.get('load_s'))} s of load, warm-up {_fmt(result.get('warmup_s'))} s, "
            f"{_fmt(result.get('settle_intervals'))} settle interval(s) left out of each step")
    return ["<h2>Summary</h2>", f"<p>{len(rows)} rates; {_e(load)}. The last rate below the "
            "crossing is highlighted; SLO met: pass or fail.</p>",
            _table(headers, out, classes, words=(9, 10), details=whys)] + _gpu_summary(result)


def _verdict(v) -> str:
    cls = {"pass": "ok", "fail": "bad"}.get(v)
    return f'<span class="{cls}">{_e(v)}</span>' if cls else _e(v)


def _warnings(result: dict) -> str:
    items = list(result.get("client_problems") or []) + list(result.get("warnings") or [])
    items += [result[k] for k in ("warmup_note", "drift_note") if result.get(k)]
    gpu = result.get("gpu") if isinstance(result.get("gpu"), dict) else {}
    items += list(gpu.get("warnings") or [])
    if not items:
        return ""
    return "<h2>Warnings</h2><ul class=\"warn\">" + "".join(
        f"<li>{_e(w)}</li>" for w in items) + "</ul>"


def _class_tables(result: dict) -> list[str]:
    sources = [("the run", result)]
    if result.get("kind") == "search":
        steps = result.get("steps") or []
        sources = [(f"step {i + 1} ({steps[i]['rate_rps']:,.0f} rps, {steps[i].get('verdict')})",
                    steps[i]) for i in capacity_and_failure(result) if i is not None]
    out = []
    for where, src in sources:
        for family, title in (("by_class", "model/path"), ("by_size", "body size")):
            classes = src.get(family)
            if not isinstance(classes, dict) or not classes:
                continue
            keys = [k for k in ("p50", "p90", "p99", "p999", "max")
                    if any(k in (c.get("latency_ms") or {}) for c in classes.values())]
            # streamed classes: their TTFT and TPOT too (p50, p99)
            extra = [(kind, k) for kind in ("ttft_ms", "tpot_ms") for k in ("p50", "p99")
                     if any(kind in c for c in classes.values())]
            rows = [[_e(name), _fmt(c.get("completed"))]
                    + [_fmt((c.get("latency_ms") or {}).get(k)) for k in keys]
                    + [_fmt((c.get(kind) or {}).get(k)) for kind, k in extra]
                    for name, c in classes.items()]
            out.append(f"<h3>Latency by {title} in {_e(where)}</h3>")
            out.append(_table([title, "completed (count)"]
                              + [f"{'p99.9' if k == 'p999' else k} (ms)" for k in keys]
                              + [f"{kind[:4].upper()} {k} (ms)" for kind, k in extra], rows))
    if out:
        out.insert(0, "<h2>By class</h2>")
    return out
