"""Reports: pure readers of what a run or a search wrote (`--out` JSON or `--runlog`).

`crestline run | crestline report`, vegeta-style: nothing here sends load. This module never
imports the engine, the compiled core or the CLI; it reads a result file, rebuilds the result
of a run or search that was cut short from its runlog, prints the terminal summary again and
re-emits a runlog's histograms as an HdrHistogram interval log.

    from crestline.report import reader as report
    result = report.load("search.runlog")      # or "search.json"
    print(report.text(result))
    report.write_hlog("run.runlog", "run.hlog")
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os

from crestline.errors import ConfigError
from crestline.measure.hdr import Hist
from crestline.measure.result import RunResult
from crestline.measure.runlog import HdrLogWriter, RunlogContents, RunlogError, load_runlog
from crestline.report.live import search_summary, stream_brief, summary_table, sweep_table
from crestline.search.result import capacity_step, search_result, step_discarded
from crestline.search.sweep import config_from_dict, sweep_result, sweep_row, warmup_note
from crestline.slo.parse import slo_text
from crestline.telemetry.recorder import efficiency, summarize

KINDS = ("run", "search", "sweep")
SEARCH_CUT_SHORT = "runlog ends before the search finished"
SWEEP_CUT_SHORT = "runlog ends before the sweep finished"
RUN_CUT_SHORT = "runlog ends before the run finished"


# -- loading -------------------------------------------------------------------------------------
def load(path: str | os.PathLike) -> dict:
    """The result dict of a run or a search, from its `--out` JSON or its `--runlog`.

    The format is found from the content: JSON starts with `{`, anything else is read as a
    msgpack runlog. A runlog's summary record is returned as it is; a runlog without one (the
    process was killed) is rebuilt from every complete record, marked `"interrupted": True`.
    Raises ConfigError, with one line naming the problem, when the file is missing, is neither
    JSON nor a runlog, has a truncated header, or holds an unknown kind of result.
    """
    return load_with_runlog(path)[0]


def load_with_runlog(path: str | os.PathLike) -> tuple[dict, RunlogContents | None]:
    """(result, runlog contents or None for a JSON file). Raises ConfigError like `load`."""
    path = os.fspath(path)
    if _is_json(path):
        return _load_json(path), None
    contents = _read_runlog(path)
    if contents.summary is not None:
        result = dict(contents.summary)
        result.setdefault("kind", _runlog_kind(contents))
        if "intervals" in result and result["intervals"] is None:
            # A run's summary record leaves its intervals to the interval records.
            result["intervals"] = [s.to_dict() for s in contents.intervals]
    elif _runlog_kind(contents) == "sweep":
        result = rebuild_sweep(contents)
    elif contents.kind == "search":
        result = rebuild_search(contents)
    else:
        result = rebuild_run(contents)
    if result.get("kind") not in KINDS:
        raise ConfigError(f"{path}: unknown kind of result {result.get('kind')!r}")
    return result, contents


def _is_json(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a result file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    if not head:
        raise ConfigError(f"{path}: empty file, not a JSON result or a runlog")
    return head.lstrip()[:1] == b"{"


def _load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid JSON result ({exc})") from None
    kind = result.get("kind") or kind_of(result)
    if kind not in KINDS:
        raise ConfigError(f"{path}: unknown kind of result {result.get('kind')!r}; expected the "
                          "JSON that crestline run --out or crestline search --out writes")
    result["kind"] = kind
    return result


def kind_of(result: dict) -> str | None:
    """'run', 'search' or 'sweep' (None if none). Results written before the "kind" key
    existed still carry their own shape."""
    if result.get("kind") in KINDS:
        return result["kind"]
    if "rows" in result and "crossing" in result:
        return "sweep"
    if "capacity_rps" in result and "steps" in result:
        return "search"
    if "requests" in result and "latency_ms" in result:
        return "run"
    return None


def _read_runlog(path: str) -> RunlogContents:
    try:
        contents = load_runlog(path)
    except RunlogError as exc:
        if exc.foreign:  # neither of the two kinds of file a report reads
            raise ConfigError(f"{path}: not a JSON result or a crestline runlog") from None
        raise
    if not isinstance(contents.header.get("spec"), dict) or \
            "started_unix_s" not in contents.header:
        raise ConfigError(f"{path}: runlog header without spec or start time")
    return contents


# -- rebuilding what a killed process did not summarise ------------------------------------------
def rebuild_run(contents: RunlogContents) -> dict:
    """A run's result from its runlog intervals (exact: histograms merge without loss),
    marked interrupted, with a warning saying it was rebuilt."""
    header = contents.header
    res = RunResult(header["spec"], header["started_unix_s"])
    for snap in contents.intervals:
        res.add(snap)
    res.interrupted = True
    res.warnings.append(f"{RUN_CUT_SHORT}: rebuilt from {len(contents.intervals)} intervals")
    windows = [s.gpu for s in contents.intervals]
    if any(windows):
        res.gpu = _gpu_record(windows)
    return res.to_dict()


def _gpu_record(windows: list) -> dict:
    """The result's `gpu` record rebuilt from per-interval windows: the device list and the
    sampler's warnings died with the process; the summary is a pure function of the windows."""
    return {"source": None, "devices": [], "summary": summarize(windows), "warnings": []}


def rebuild_search(contents: RunlogContents) -> dict:
    """A search's result from its runlog's header, step records and intervals.

    capacity_rps is what the policy reports when a search ends before converging: the highest
    rate whose confirmation (a full-length step) passed, not discarded, or None; never
    converged.
    """
    header = contents.header
    spec = {k: v for k, v in header["spec"].items() if k != "search"}
    config = header["spec"].get("search") or {}
    steps = [{k: v for k, v in rec.items() if k != "type"} for rec in contents.steps]
    _fill_step_distributions({"config": config, "steps": steps}, contents)
    lo, hi = search_bracket(steps)
    confirmed = [s["rate_rps"] for s in steps if s.get("phase") == "confirm"
                 and s.get("verdict") == "pass" and not step_discarded(s)]
    cap = max(confirmed) if confirmed else None
    # The runlog keeps each step's margin but not its error, so the interval is the
    # bracket's: from the confirmed rate up to the lowest rate above it that failed.
    ci = None if cap is None else [cap, hi if hi is not None and hi > cap else None]
    result = search_result(
        capacity_rps=cap, capacity_ci_rps=ci, arrival=spec.get("arrival"),
        converged=False, reason=SEARCH_CUT_SHORT,
        slo=dict(config.get("slo") or {}), bracket=[lo, hi],
        warmup_s=0.0 if config.get("warmup") == "none" else None, warmup_note="",
        load_s=sum(s.dur_s for s in contents.intervals), drain_s=None,
        client_ceiling_rps=None, config=config, steps=steps)
    result |= {"intervals": [s.to_dict() for s in contents.intervals],
               "url": spec.get("url"), "crestline": spec.get("version"),
               "started_unix_s": header["started_unix_s"], "interrupted": True, "spec": spec}
    windows = [s.gpu for s in contents.intervals]
    if any(windows):
        result["gpu"] = _gpu_record(windows)
    return result


def _runlog_kind(contents: RunlogContents) -> str:
    """'sweep' when the header's spec carries a sweep's configuration, else the runlog's own
    kind ('run' or 'search')."""
    return "sweep" if "sweep" in contents.header.get("spec", {}) else contents.kind


def rebuild_sweep(contents: RunlogContents) -> dict:
    """A sweep's result from its runlog: every row whose step finished (it has a step
    record) recomputed from that step's intervals, exactly as the sweep computed it; marked
    interrupted, with a warning saying it was rebuilt."""
    header = contents.header
    spec = {k: v for k, v in header["spec"].items() if k != "sweep"}
    config = config_from_dict(header["spec"]["sweep"])
    by_step: dict[int, list] = {}
    for snap in contents.intervals:
        if snap.step is not None:
            by_step.setdefault(snap.step, []).append(snap)
    rows = [sweep_row(rec["rate_rps"], by_step.get(rec["index"], []), spec,
                      config.settle_intervals, config.slo) for rec in contents.steps]
    held = [s for s in contents.intervals if s.warmup]
    stepped = any(s.step is not None for s in contents.intervals)  # the warm-up had ended
    warmup_s = 0.0 if config.warmup == "none" else (sum(s.dur_s for s in held) if stepped
                                                    else None)
    capped = config.warmup == "auto" and warmup_s is not None \
        and warmup_s >= config.max_warmup_s - config.interval_s / 2
    result = sweep_result(
        config=config, rows=rows, url=spec.get("url"), version=spec.get("version"),
        started_unix_s=header["started_unix_s"], interrupted=True, spec=spec,
        workers=spec.get("workers"), warmup_s=warmup_s,
        warmup_note=warmup_note(warmup_s or 0.0, (config.rates_rps or (0.0,))[0], capped),
        load_s=sum(s.dur_s for s in contents.intervals if not s.drain),
        intervals=[s.to_dict() for s in contents.intervals],
        warnings=[f"{SWEEP_CUT_SHORT}: rebuilt {len(rows)} rows from "
                  f"{len(contents.intervals)} intervals"])
    windows = [s.gpu for s in contents.intervals]
    if any(windows):
        result["gpu"] = _gpu_record(windows)
    return result


def search_bracket(steps: list[dict]) -> tuple[float | None, float | None]:
    """(lo, hi) from step records: lo the highest rate whose last pass/fail step passed, hi the
    lowest rate above lo that failed or stayed unsure. Discarded steps are no evidence."""
    last: dict[float, str] = {}
    for s in steps:
        if s.get("verdict") in ("pass", "fail") and not discarded(s):
            last[s["rate_rps"]] = s["verdict"]
    passed = [r for r, v in last.items() if v == "pass"]
    lo = max(passed) if passed else None
    above = [s["rate_rps"] for s in steps if s.get("verdict") in ("fail", "unsure")
             and not discarded(s) and (lo is None or s["rate_rps"] > lo)]
    return lo, (min(above) if above else None)


def discarded(step: dict) -> bool:
    """A search step the warm-up re-check set aside (its verdict counts for nothing): its
    `discarded` key, or for results written before that key, the prose its `why` starts with."""
    return step_discarded(step)


def fill_from_runlog(result: dict, contents: RunlogContents | None) -> dict:
    """A copy of result with what a report plots and the result lacks taken from the runlog:
    the intervals, a run's latency distribution, and each search step's distribution."""
    result = dict(result)
    if contents is None:
        return result
    if not result.get("intervals") and contents.intervals:
        result["intervals"] = [s.to_dict() for s in contents.intervals]
    if result.get("kind") == "run" and not result.get("latency_distribution_ms"):
        result["latency_distribution_ms"] = _latency_of(contents.intervals).distribution_ms()
    if result.get("kind") == "search":
        result["steps"] = [dict(s) for s in result.get("steps", [])]
        _fill_step_distributions(result, contents)
    return result


def _latency_of(snaps) -> Hist:
    merged = Hist.empty()
    for snap in snaps:
        if "latency" in snap.hists:
            merged.add(snap.hists["latency"])
    return merged


def _fill_step_distributions(result: dict, contents: RunlogContents) -> None:
    """Per-step latency distribution (and GPU picture) from the intervals tagged with that
    step, leaving out the settle intervals as the judge does (excused spikes stay in, as in
    `latency_ms`)."""
    settle = int((result.get("config") or {}).get("settle_intervals", 1))
    by_step: dict[int, list] = {}
    for snap in contents.intervals:
        if snap.step is not None:
            by_step.setdefault(snap.step, []).append(snap)
    for pos, step in enumerate(result.get("steps", [])):
        snaps = by_step.get(step.get("index", pos), [])[settle:]
        if not step.get("distribution_ms"):
            merged = _latency_of(snaps)
            if merged.total:
                step["distribution_ms"] = merged.distribution_ms()
        if step.get("gpu") is None and any(s.gpu for s in snaps):
            step["gpu"] = efficiency([s.gpu for s in snaps], step.get("achieved_rps"))


# -- shared reading helpers (also used by the HTML report) ---------------------------------------
def timeline_s(intervals: list[dict], kind: str) -> list[float]:
    """Each interval's end on one time axis, in seconds. A run's `t_s` already is one; a
    search restarts `t_s` at every stage: its axis is `elapsed_s` (seconds since the search
    began, drains included) when every interval has it, else cumulative load time, drains left
    out (a runlog rebuilt without its summary)."""
    if kind == "run":
        return [float(iv["t_s"]) for iv in intervals]
    if intervals and all(iv.get("elapsed_s") is not None for iv in intervals):
        return [float(iv["elapsed_s"]) for iv in intervals]  # the search's clock, drains in
    out, total = [], 0.0
    for iv in intervals:
        total += float(iv.get("dur_s") or 0.0)
        out.append(total)
    return out


def started_utc(result: dict) -> str:
    """The run's own start time as 'YYYY-MM-DD HH:MM:SS UTC', or '' when unknown."""
    t = result.get("started_unix_s")
    if t is None:
        return ""
    return _dt.datetime.fromtimestamp(float(t), _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def capacity_and_failure(result: dict) -> tuple[int | None, int | None]:
    """Positions in steps of the capacity step (the last non-discarded pass at capacity_rps)
    and of the first failing step above it (lowest rate; the earliest among equals)."""
    steps = result.get("steps") or []
    cap = result.get("capacity_rps")
    cap_i, fail_i = capacity_step(steps, cap), None
    above = [(s["rate_rps"], i) for i, s in enumerate(steps)
             if s.get("verdict") in ("fail", "unsure") and not discarded(s)
             and (cap is None or s["rate_rps"] > cap)]
    if above:
        fail_i = min(above)[1]
    return cap_i, fail_i


# -- terminal text -------------------------------------------------------------------------------
def text(result: dict) -> str:
    """The terminal summary: the table `crestline run` prints for a run; for a search, a line
    per step and the summary `crestline search` prints. Raises KeyError on a dict that is not
    a crestline result (use `load` to check files)."""
    if result.get("kind") == "search":
        return _search_text(result)
    if result.get("kind") == "sweep":
        return sweep_table(result)
    return summary_table(result)


def _search_text(result: dict) -> str:
    slo = slo_text(result.get("slo"))
    when = started_utc(result)
    lines = [f"crestline search {result.get('url')}: {slo}" + (f", started {when}" if when else "")
             + ("  [interrupted]" if result.get("interrupted") else ""), ""]
    lines.append(f"{'step':>4} {'phase':<8} {'rate rps':>10} {'verdict':<7} {'achieved rps':>12} "
                 f"{'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors %':>8} "
                 f"{'measured s':>10}  why")
    for n, s in enumerate(result.get("steps") or [], 1):
        lat = s.get("latency_ms") or {}
        ach = s.get("achieved_rps")
        lines.append(
            f"{n:>4} {s.get('phase', ''):<8} {s['rate_rps']:>10,.0f} {s.get('verdict') or '-':<7} "
            f"{'-' if ach is None else format(ach, ',.0f'):>12} {_num(lat.get('p50')):>8} "
            f"{_num(lat.get('p99')):>8} {_num(lat.get('p999')):>9} "
            f"{100 * (s.get('error_rate') or 0):>8.3g} {s.get('measured_s') or 0:>10.1f}  "
            + (f"{stream_brief(s)}  " if s.get("stream") else "") + f"{s.get('why', '')}")
    return "\n".join(lines) + "\n" + search_summary(result)


def _num(v) -> str:
    return "-" if v is None else f"{v:.3g}"


# -- HdrHistogram interval log -------------------------------------------------------------------
def write_hlog(path_in: str | os.PathLike, path_out: str | os.PathLike,
               contents: RunlogContents | None = None) -> int:
    """Re-emit every interval of a runlog as an HdrHistogram interval log (format 1.3, as
    `--hdr-log` writes): latency untagged, service and send_lag tagged, values in ns. A search's
    intervals are laid end to end on its load-time axis. Returns the number of intervals.

    Raises ConfigError when path_in is a JSON result (it holds no histograms: pass the
    `--runlog` file) or is not readable as a runlog. contents: path_in already read.
    """
    path_in = os.fspath(path_in)
    if contents is None:
        if _is_json(path_in):
            raise ConfigError(f"{path_in}: a JSON result holds no histograms; --hlog needs "
                              "the --runlog file")
        contents = _read_runlog(path_in)
    snaps = contents.intervals
    if _runlog_kind(contents) in ("search", "sweep"):  # stages restart t_s
        ends = timeline_s([{"dur_s": s.dur_s} for s in snaps], "search")
        snaps = [dataclasses.replace(s, t_s=end) for s, end in zip(snaps, ends, strict=True)]
    writer = HdrLogWriter(os.fspath(path_out), contents.header["started_unix_s"])
    try:
        for snap in snaps:
            writer.interval(snap)
    finally:
        writer.close()
    return len(snaps)
