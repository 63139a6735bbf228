"""What the terminal shows: one line per interval, and the summary table at the end."""

from __future__ import annotations

import sys

from crestline.measure.result import IntervalSnapshot, tls_summary
from crestline.slo.parse import slo_text


def _ms(ns: float) -> str:
    ms = ns / 1e6
    if ms >= 100:
        return f"{ms:.0f}ms"
    if ms >= 10:
        return f"{ms:.1f}ms"
    return f"{ms:.2f}ms"


def gpu_brief(gpu: dict | None) -> str:
    """'71% 310W' over every device of an interval's GPU window: mean util, total power."""
    if not gpu:
        return "-"
    utils = [d["util_pct"] for d in gpu.values() if d.get("util_pct") is not None]
    powers = [d["power_w"] for d in gpu.values() if d.get("power_w") is not None]
    parts = [f"{sum(utils) / len(utils):.0f}%" if utils else "-%"]
    if powers:
        parts.append(f"{sum(powers):.0f}W")
    if any(d.get("throttle") for d in gpu.values() if set(d.get("throttle") or ()) - {"gpu_idle"}):
        parts.append("throttled")
    return " ".join(parts)


class LiveLines:
    """One line per interval on a stream (stderr by default).

    On a terminal: a bold header repeated every 40 lines, errors and verdicts in colour;
    otherwise plain lines only, for logs and pipes.
    """

    def __init__(self, stream=None, tty: bool | None = None, gpu: bool = False,
                 search: bool = False):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.gpu = gpu
        self.search = search
        self._lines = 0
        self._elapsed_s = 0.0  # a search's stages each restart t_s: count across them
        head = f"{'elapsed':>8} " + (f"{'rate/s':>9} " if search else "")
        head += (f"{'offered/s':>10} {'achieved/s':>10} {'p50':>8} {'p99':>8} {'errors':>7} "
                 f"{'shed':>6} {'inflight':>8} {'send lag p99':>12}")
        if gpu:
            head += f"  {'gpu':<14}"
        self._header = self.colour(head, "1")

    def colour(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.tty else text

    def line(self, text: str) -> None:
        """A permanent line (a search step's verdict, a warning)."""
        print(text, file=self.stream, flush=True)

    def warning(self, text: str) -> None:
        self.line(f"warning: {text}")

    def interval(self, snap: IntervalSnapshot) -> None:
        if self._lines % 40 == 0 and (self._lines == 0 or self.tty):
            self.line(self._header)
        self._lines += 1
        dur = snap.dur_s or float("nan")
        p50, p99 = snap.latency.values_at((50.0, 99.0))
        lag99 = snap.hists["send_lag"].values_at((99.0,))[0]
        self._elapsed_s += snap.dur_s
        label = "drain" if snap.drain else f"{self._elapsed_s if self.search else snap.t_s:.1f}s"
        offered = "-" if snap.drain else f"{snap.scheduled / dur:.0f}"
        achieved = "-" if snap.drain else f"{snap.completed / dur:.0f}"
        errors = f"{snap.errors:>7}"
        if snap.errors:
            errors = self.colour(errors, "31")
        text = f"{label:>8} "
        if self.search:
            rate = f"{snap.rate_rps:,.0f}" if snap.rate_rps is not None else "-"
            text += f"{rate:>9} "
        text += (f"{offered:>10} {achieved:>10} {_ms(p50):>8} {_ms(p99):>8} {errors} "
                 f"{snap.shed:>6} {snap.inflight:>8} {_ms(lag99):>12}")
        if self.gpu:
            text += f"  {gpu_brief(snap.gpu):<14}"
        self.line(text)


def client_cpu_line(cpu: dict | None) -> str | None:
    """'cpu 0.42 cores (0.42 per process); host busy 1.31 of 2 cores', or None."""
    if not cpu:
        return None
    text = f"cpu {cpu['mean_cores']:.2f} cores ({cpu['per_process']:.2f} per process)"
    if cpu.get("host_busy_cores") is not None:
        text += f"; host busy {cpu['host_busy_cores']:.2f} of {cpu['host_cores']} cores"
    return text


def summary_table(result: dict) -> str:
    """The end-of-run table, from the result dict (so reports can rebuild it from JSON)."""
    req = result["requests"]
    spec = result.get("spec", {})
    rows = [
        f"crestline run {result.get('url')}: {spec.get('arrival')} "
        f"{result.get('target_rps'):g} rps for {result['duration_s']:.1f}s, "
        f"{spec.get('connections')} connections, {spec.get('workers')} worker(s)"
        + ("  [interrupted]" if result.get("interrupted") else ""),
        "",
        f"{'':<16}{'p50':>10}{'p90':>10}{'p99':>10}{'p99.9':>10}{'max':>10}{'mean':>10}",
    ]
    streams = (("ttft_ms", "ttft ms"), ("ttft_sent_ms", "ttft sent ms"), ("itl_ms", "itl ms"),
               ("tpot_ms", "tpot ms"), ("e2e_ms", "e2e ms")) if "ttft_ms" in result else ()
    for key, label in (("latency_ms", "latency ms"), ("service_ms", "service ms"),
                       ("send_lag_ms", "send lag ms"), ("schedule_lag_ms", "sched lag ms"),
                       *streams):
        s = result[key]
        rows.append(f"{label:<16}" + "".join(
            f"{s[k]:>10.3f}" for k in ("p50", "p90", "p99", "p999", "max", "mean")))
    rows.append("")
    rows.append(
        f"requests  {req['scheduled']} scheduled, {req['sent']} sent, {req['ok']} ok, "
        f"{req['errors']} errors, {req['shed']} shed")
    rows.append(f"rate      offered {result['offered_rps']:.1f}/s, "
                f"achieved {result['achieved_rps']:.1f}/s")
    rows += setup_lines(result) + stream_lines(result)
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
            streamed = any("ttft_ms" in c for c in classes.values())
            rows.append(f"latency ms {title:<20}{'requests':>10}{'p50':>10}{'p99':>10}"
                        f"{'p99.9':>10}{'max':>10}"
                        + (f"{'ttft p50':>10}{'ttft p99':>10}" if streamed else ""))
            for name, c in list(classes.items())[:12]:
                s, t = c["latency_ms"], c.get("ttft_ms")
                rows.append(f"  {name[:29]:<29}{c['completed']:>10}{s['p50']:>10.3f}"
                            f"{s['p99']:>10.3f}{s['p999']:>10.3f}{s['max']:>10.3f}"
                            + (f"{t['p50']:>10.3f}{t['p99']:>10.3f}" if t else ""))
    gpu = result.get("gpu")
    for dev, g in ((gpu or {}).get("summary") or {}).items():
        bits = [f"{g['util_pct']:.0f}% busy" if g.get("util_pct") is not None else None,
                f"{g['power_w']:.0f} W" if g.get("power_w") is not None else None,
                f"{g['mem_used_mib'] / 1024:.1f} GiB used" if g.get("mem_used_mib") else None,
                f"{g['temp_c']:.0f} C max" if g.get("temp_c") is not None else None,
                f"throttle: {', '.join(g['throttle'])}" if g.get("throttle") else None]
        if any(bits):
            rows.append(f"gpu {dev:<5} " + ", ".join(b for b in bits if b))
    if result.get("slo"):
        rows.append("slo       " + ("met: " if result["slo_met"] else "NOT met: ")
                    + "; ".join(result.get("slo_why", [])))
    rows.append("client    " + ("ok: kept to its schedule" if result["client_ok"] else
                                "NOT OK: " + "; ".join(result["client_problems"])))
    line = client_cpu_line(result.get("client_cpu"))
    if line:
        rows.append(f"          {line}")
    for w in result.get("warnings", []):
        rows.append(f"warning   {w}")
    return "\n".join(rows)


def stream_lines(result: dict) -> list[str]:
    """The summary's token-stream line: output tokens, their rate, goodput, how counted."""
    st = result.get("stream")
    if not st:
        return []
    tok = result["output_tokens"]
    good = st["goodput_fraction"]
    line = (f"tokens    {tok['total']:,} output ({tok['per_s'] or 0:,.1f}/s), per request p50 "
            f"{tok['per_request']['p50']:g}; {st['streams']} streams, goodput "
            f"{st['goodput_rps'] or 0:.1f}/s" + (f" ({good:.1%})" if good is not None else ""))
    notes = [f"{st['reasoning_tokens']:,} reasoning" if st["reasoning_tokens"] else "",
             f"{st['usage_mismatch']} usage != events" if st["usage_mismatch"] else "",
             f"{st['no_done']} without [DONE]" if st["no_done"] else "",
             f"{st['no_token']} with no token" if st["no_token"] else ""]
    notes = [n for n in notes if n]
    return [line + (f"; {', '.join(notes)}" if notes else "")]


def stream_brief(d: dict) -> str:
    """A search step's or a sweep row's token-stream figures in one short clause ('' when it
    did not stream): TTFT and ITL p99, output tokens/s, goodput."""
    if not d.get("stream"):
        return ""
    good = d["stream"]["goodput_fraction"]
    return (f"ttft p99 {d['ttft_ms']['p99']:.3g} ms  itl p99 {d['itl_ms']['p99']:.3g} ms  "
            f"{d['output_tokens']['per_s'] or 0:,.0f} tok/s"
            + (f"  goodput {good:.1%}" if good is not None else ""))


def tls_text(tls: dict) -> str:
    """How the server was checked (measure.result.tls_summary's dict), --insecure loudly."""
    return (("INSECURE: the server's certificate was not verified (--insecure)"
             if tls["insecure"] else "verified against " + (tls["cacert"] or "the system store"))
            + (", client certificate sent" if tls.get("client_cert") else ""))


def setup_lines(result: dict) -> list[str]:
    """The summary's TLS line (--insecure said loudly) and the connection set-up times."""
    rows = []
    tls = result.get("tls")
    if tls:
        rows.append("tls       " + tls_text(tls))
    setup = result.get("connection_setup_ms")
    if setup and setup["connections"]:
        parts = [f"{setup['connections']} opened", "connect p50 {p50:.3f} p99 {p99:.3f} ms"
                 .format(**setup["connect"])]
        if setup.get("tls_handshake"):
            parts.append("TLS handshake p50 {p50:.3f} p99 {p99:.3f} ms"
                         .format(**setup["tls_handshake"]))
        rows.append("conns     " + ", ".join(parts))
    return rows


VERDICT_COLOURS = {"pass": "32", "fail": "31", "unsure": "33", "invalid": "35"}


def search_step_line(number: int, step: dict, policy) -> str:
    """One line per finished search step: rate, verdict, percentiles, and the bracket."""
    lo, hi = policy.lo, policy.hi
    bracket = f"[{lo:,.0f} .. {hi:,.0f}]" if lo and hi else (
        f"[{lo:,.0f} .. ]" if lo else (f"[ .. {hi:,.0f}]" if hi else "[ .. ]"))
    lat = step["latency_ms"]
    warm = ""
    if number == 1 and policy.warmup_s:
        warm = f"  (warm after {policy.warmup_s:.0f} s)"
    gpu = step.get("gpu")
    gpu_text = ""
    if gpu and gpu.get("util_pct") is not None:
        gpu_text = f"  gpu {gpu['util_pct']:.0f}%"
        if gpu.get("rps_per_w"):
            gpu_text += f" {gpu['power_w']:.0f}W {gpu['rps_per_w']:.3g} rps/W"
    stream = stream_brief(step)
    return (f"step {number:>2} {step['phase']:<8} {step['rate_rps']:>10,.0f} rps  "
            f"{step['verdict']:<7} p50 {lat['p50']:.3g} ms  p99 {lat['p99']:.3g} ms  "
            + (f"{stream}  " if stream else "")
            + f"{step['measured_s']:.0f}s  bracket {bracket}{warm}{gpu_text}  {step['why']}")


def search_summary(result: dict) -> str:
    """The end-of-search lines: the capacity with its interval and arrival process, then how
    the search ended. Results written before `capacity_ci_rps` and `arrival` existed show the
    capacity with its bracket instead."""
    cap = result["capacity_rps"]
    lo, hi = result["bracket"]
    slo = slo_text(result["slo"])
    ci = result.get("capacity_ci_rps") or [None, None]
    arrival = f", {result['arrival']} arrivals" if result.get("arrival") else ""
    bracket = f"bracket {lo:,.0f} .. {hi:,.0f} rps" if lo and hi else ""
    lines = [""]
    if cap is None and lo:
        lines.append(f"no confirmed capacity at {slo}{arrival}: {result['reason']} (highest "
                     f"pass {lo:,.0f} rps, not confirmed)")
    elif cap is None:
        lines.append(f"no rate met {slo}: {result['reason']}")
    else:
        if "capacity_ci_rps" not in result:
            lines.append(f"capacity {cap:,.0f} rps at {slo}"
                         + (f" ({bracket})" if bracket else ""))
        else:
            interval = (f" (95% CI {ci[0]:,.0f}..{ci[1]:,.0f})"
                        if ci[0] is not None and ci[1] is not None else "")
            lines.append(f"capacity {cap:,.0f} rps{interval} at {slo}{arrival}")
        gpu = result.get("capacity_gpu")
        if gpu and gpu.get("util_pct") is not None:
            eff = (f", {gpu['power_w']:.0f} W: {gpu['rps_per_w']:.3g} rps/W"
                   if gpu.get("rps_per_w") else "")
            lines.append(f"at capacity: {gpu['gpus']} GPU(s) {gpu['util_pct']:.0f}% busy"
                         f"{eff}, {gpu['rps_per_gpu']:,.0f} rps per GPU")
    ended = result["reason"] + (f" ({bracket})" if bracket and "capacity_ci_rps" in result
                                else "")
    lines.append(f"{'converged' if result['converged'] else 'NOT converged'}: "
                 f"{ended}; {len(result['steps'])} steps, "
                 f"{result['load_s']:.0f} s of load; " + (
                     "warm-up not finished" if result["warmup_s"] is None
                     else f"warm-up {result['warmup_s']:.0f} s"))
    for key in ("warmup_note", "drift_note"):
        if result.get(key):
            lines.append(f"warning: {result[key]}")
    for w in result.get("warnings", []):
        lines.append(f"warning: {w}")
    lines += _spec_tls_lines(result)
    return "\n".join(lines)


def _spec_tls_lines(result: dict) -> list[str]:
    tls = tls_summary(result.get("spec") or {})
    return [f"tls: {tls_text(tls)}"] if tls else []


def sweep_table(result: dict) -> str:
    """The end-of-sweep table, one row per rate, then the crossing line (from the result
    dict, so reports rebuild it from JSON or a runlog)."""
    slo = slo_text(result.get("slo"))
    lines = [f"crestline sweep {result.get('url')}: {result.get('arrival')} arrivals, "
             f"{result.get('step_s') or 0:g} s per rate" + (f", {slo}" if slo else "")
             + ("  [interrupted]" if result.get("interrupted") else ""), ""]
    lines.append(f"{'rate rps':>10} {'offered':>10} {'achieved':>10} {'p50 ms':>8} "
                 f"{'p90 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} {'errors %':>8} "
                 f"{'met':>4}")
    for row in result.get("rows") or []:
        lat = row.get("latency_ms") or {}
        met = {True: "yes", False: "NO"}.get(row.get("slo_met"), "-")
        client = "" if row.get("client_ok", True) else "  client fell behind"
        stream = stream_brief(row)
        lines.append(
            f"{row['rate_rps']:>10,.0f} {row['offered_rps']:>10,.0f} "
            f"{row['achieved_rps']:>10,.0f} "
            + " ".join(f"{lat.get(k, 0):>{w}.3g}" for k, w in
                       (("p50", 8), ("p90", 8), ("p99", 8), ("p999", 9), ("max", 8)))
            + f" {100 * (row.get('error_rate') or 0):>8.3g} {met:>4}{client}"
            + (f"  {stream}" if stream else ""))
    lines.append("")
    if result.get("crossing_note"):
        lines.append(result["crossing_note"])
    warm = result.get("warmup_s")
    lines.append(f"{len(result.get('rows') or [])} of {len(result.get('rates_rps') or [])} "
                 f"rates, {result.get('load_s') or 0:.0f} s of load; "
                 + ("warm-up not finished" if warm is None else f"warm-up {warm:.0f} s"))
    for w in ([result["warmup_note"]] if result.get("warmup_note") else []) + list(
            result.get("warnings") or []):
        lines.append(f"warning: {w}")
    lines += _spec_tls_lines(result)
    return "\n".join(lines)
