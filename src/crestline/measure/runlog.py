"""Records of a run as it goes: a msgpack runlog and an HdrHistogram interval log.

Both are written one interval at a time and flushed, so a crash or Ctrl-C keeps every interval
that finished. The runlog holds everything a report needs (counters and the four histograms in
the V2 encoding); the .hlog holds latency (untagged) and service / send_lag (tagged), readable by
HdrHistogram's own log readers and HistogramLogProcessor.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field

import msgpack

from crestline.errors import ConfigError
from crestline.measure.hdr import Hist
from crestline.measure.result import COUNTER_NAMES, HIST_NAMES, SETUP_NAMES, IntervalSnapshot
from crestline.measure.stream import STREAM_HISTS

RUNLOG_FORMAT = "crestline-runlog"
RUNLOG_VERSION = 1


class RunlogWriter:
    """One msgpack map per record: a header, one per interval, then the summary."""

    def __init__(self, path: str, spec: dict, started_unix_s: float):
        self._f = open(path, "wb")
        self._packer = msgpack.Packer(use_bin_type=True)
        self._write({"type": "header", "format": RUNLOG_FORMAT, "version": RUNLOG_VERSION,
                     "started_unix_s": started_unix_s, "spec": spec})

    def _write(self, record: dict) -> None:
        self._f.write(self._packer.pack(record))
        self._f.flush()

    def interval(self, snap: IntervalSnapshot) -> None:
        rec = {"type": "interval", "index": snap.index, "t_s": snap.t_s, "dur_s": snap.dur_s,
               "drain": snap.drain, "by_error": snap.by_error, "inflight": snap.inflight,
               "queued": snap.queued, "connections": snap.connections,
               "messages": [list(m) for m in snap.messages],
               "hists": {name: _hist_record(h) for name, h in snap.hists.items()}}
        for name in COUNTER_NAMES:
            rec[name] = getattr(snap, name)
        if snap.setup:
            rec["setup"] = {name: _hist_record(h) for name, h in snap.setup.items()}
        if snap.stream:
            rec["stream"] = snap.stream  # its histograms are in hists, by STREAM_HISTS name
        if snap.gpu is not None:
            rec["gpu"] = snap.gpu
        if snap.step is not None or snap.rate_rps is not None:
            rec["step"], rec["rate_rps"] = snap.step, snap.rate_rps
        rec["cpu_s"] = snap.cpu_s
        if snap.host_busy_s is not None:
            rec["host_busy_s"] = snap.host_busy_s
        if snap.warmup is not None:
            # As known when the interval closed: a later re-check that discards steps as
            # warm-up says so in their step records (`discarded`).
            rec["warmup"] = snap.warmup
        if snap.faults:  # a distributed pool's (crestline.engine.ray)
            rec["faults"] = list(snap.faults)
        if snap.members is not None:
            rec["members"] = snap.members
        self._write(rec)

    def record(self, kind: str, data: dict) -> None:
        """Any other record, e.g. a search step: {"type": kind, **data}."""
        self._write({"type": kind, **data})

    def close(self, summary: dict | None = None) -> None:
        if self._f.closed:
            return
        if summary is not None:
            self._write({"type": "summary", "result": summary})
        self._f.close()


@dataclass
class RunlogContents:
    """Everything a runlog holds. summary is None when the run did not finish (a crash or a
    kill): the intervals (and a search's steps) written until then are still all there."""

    header: dict
    intervals: list[IntervalSnapshot] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    summary: dict | None = None

    @property
    def kind(self) -> str:
        """'search' or 'run'."""
        return "search" if "search" in self.header.get("spec", {}) else "run"


class RunlogError(ConfigError):
    """A file that is not a readable runlog (the user's to fix, like a bad option). foreign:
    not a runlog at all, as opposed to a damaged or other-version one."""

    def __init__(self, message: str, foreign: bool = False):
        super().__init__(message)
        self.foreign = foreign


def load_runlog(path: str) -> RunlogContents:
    """Read a runlog; a tail cut short by a crash is ignored. Raises RunlogError if the file
    is not one, holds another version, ends inside its header, or has a malformed record."""
    contents = None
    intervals, steps, summary = [], [], None
    with open(path, "rb") as f:
        first = f.read(1)
        f.seek(0)
        unpacker = msgpack.Unpacker(f, raw=False, max_buffer_size=64 << 20)
        try:
            for rec in unpacker:
                kind = rec.get("type") if isinstance(rec, dict) else None
                if kind == "header":
                    if (rec.get("format") != RUNLOG_FORMAT
                            or rec.get("version") != RUNLOG_VERSION):
                        raise RunlogError(
                            f"{path}: not a crestline runlog version {RUNLOG_VERSION}")
                    contents = RunlogContents(rec)
                elif kind == "interval":
                    intervals.append(_snapshot(rec))
                elif kind == "step":
                    steps.append(rec)
                elif kind == "summary":
                    summary = rec["result"]
        except RunlogError:
            raise  # a ValueError too (it is a ConfigError): not a cut record
        except (msgpack.UnpackException, ValueError) as exc:
            if contents is None:
                raise RunlogError(f"{path}: not a crestline runlog ({exc})", foreign=True) \
                    from None
            # A record cut short by a crash: keep everything before it.
        except (KeyError, TypeError, AttributeError) as exc:
            raise RunlogError(f"{path}: malformed runlog record ({exc!r})") from None
    if contents is None:
        # The header is a msgpack map: a file starting with one ended inside it.
        if first and (0x80 <= first[0] <= 0x8F or first[0] in (0xDE, 0xDF)):
            raise RunlogError(f"{path}: truncated runlog header (the file ends inside its "
                              "first record)")
        raise RunlogError(f"{path}: no runlog header; is this a crestline runlog?", foreign=True)
    contents.intervals, contents.steps, contents.summary = intervals, steps, summary
    return contents


def read_runlog(path: str) -> tuple[dict, list[IntervalSnapshot], dict | None]:
    """(header, interval snapshots, summary or None if the run did not finish)."""
    c = load_runlog(path)
    return c.header, c.intervals, c.summary


def _snapshot(rec: dict) -> IntervalSnapshot:
    snap = IntervalSnapshot(rec["index"], rec["t_s"], rec["dur_s"], drain=rec["drain"])
    for name in COUNTER_NAMES + ("inflight", "queued", "connections"):
        setattr(snap, name, rec[name])
    snap.by_error = dict(rec["by_error"])
    snap.messages = [tuple(m) for m in rec["messages"]]
    snap.hists = {n: _hist(rec["hists"][n]) for n in HIST_NAMES + STREAM_HISTS
                  if n in rec["hists"]}
    snap.stream = dict(rec.get("stream", {}))
    snap.setup = {n: _hist(h) for n, h in rec.get("setup", {}).items() if n in SETUP_NAMES}
    snap.gpu = rec.get("gpu")
    snap.step, snap.rate_rps = rec.get("step"), rec.get("rate_rps")
    snap.warmup = rec.get("warmup")
    snap.cpu_s, snap.host_busy_s = rec.get("cpu_s", 0.0), rec.get("host_busy_s")
    snap.faults, snap.members = list(rec.get("faults", ())), rec.get("members")
    return snap


def _hist_record(h: Hist) -> dict:
    # The V2 encoding keeps counts; the exact min, max and clamped count ride beside it.
    return {"v2": h.encode(), "min_ns": h.min_ns, "max_ns": h.max_ns, "clamped": h.clamped}


def _hist(rec: dict) -> Hist:
    h = Hist.decode(rec["v2"])
    if h.total:
        h.min_ns, h.max_ns = rec["min_ns"], rec["max_ns"]
    h.clamped = rec["clamped"]
    return h


class HdrLogWriter:
    """HdrHistogram interval log, format 1.3 (what Java's HistogramLogWriter writes).

    Timestamps are seconds relative to StartTime; values are ns, so the max column is in ms
    (the usual max-value unit ratio of 1e6).
    """

    TAGGED = ("service", "send_lag")

    def __init__(self, path: str, started_unix_s: float | None = None):
        self._f = open(path, "w")
        start = time.time() if started_unix_s is None else started_unix_s
        human = _dt.datetime.fromtimestamp(start, _dt.timezone.utc).strftime(
            "%a %b %d %H:%M:%S UTC %Y")
        self._f.write("#[Histogram log format version 1.3]\n")
        self._f.write(f"#[StartTime: {start:.3f} (seconds since epoch), {human}]\n")
        self._f.write("#[latency (untagged), service and send_lag (tagged) in ns, by crestline]\n")
        self._f.write('"StartTimestamp","Interval_Length","Interval_Max",'
                      '"Interval_Compressed_Histogram"\n')
        self._f.flush()

    def interval(self, snap: IntervalSnapshot) -> None:
        start_s = snap.t_s - snap.dur_s
        for name in ("latency",) + self.TAGGED:
            h = snap.hists.get(name)
            if h is None:
                continue
            tag = "" if name == "latency" else f"Tag={name},"
            max_ms = (h.max_ns if h.total else 0) / 1e6
            self._f.write(f"{tag}{start_s:.3f},{snap.dur_s:.3f},{max_ms:.3f},{h.encode()}\n")
        self._f.flush()

    def close(self, summary: dict | None = None) -> None:
        self._f.close()
