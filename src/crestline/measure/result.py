"""Interval snapshots and the run result: counters plus four histograms, merged exactly.

Pure: built from the core's per-interval tuples (or from a runlog), never touching sockets.
"""

from __future__ import annotations

import functools
import math
import pickle
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType

from crestline.measure.cpu import client_cpu_summary
from crestline.measure.hdr import Hist
from crestline.measure.oserrors import explain
from crestline.measure.stream import (
    add_counts,
    class_stream_families,
    class_stream_ms,
    interval_stream,
    stream_from_core,
    stream_summary,
)

# gRPC responses by grpc-status code, 1..16 in order (code 0 is ok).
GRPC_ERROR_KINDS = tuple("grpc_" + name for name in (
    "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
    "already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
    "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss",
    "unauthenticated"))
ERROR_KINDS = ("connect", "timeout", "read", "http_4xx", "http_5xx", "protocol",
               "tls") + GRPC_ERROR_KINDS
HIST_NAMES = ("latency", "service", "send_lag", "schedule_lag")
# Connection set-up times, one per connection opened (kept apart from request latency).
SETUP_NAMES = ("connect", "tls_handshake")
CLASS_FAMILIES = ("by_class", "by_size")


def add_classes(into: dict, other: dict) -> None:
    """Add per-class histograms of `other` into `into` (both {family: {name: Hist}})."""
    for family, hists in other.items():
        mine = into.setdefault(family, {})
        for name, h in hists.items():
            if name in mine:
                mine[name].add(h)
            else:
                mine[name] = h.copy()


def add_setup(into: dict, other: dict) -> None:
    """Add set-up histograms of `other` into `into` (both {SETUP_NAMES name: Hist})."""
    for name, h in other.items():
        if name in into:
            into[name].add(h)
        else:
            into[name] = h.copy()


def setup_summary(setup: dict) -> dict:
    """The result's `connection_setup_ms`: connections opened, and each set-up time's
    percentiles in ms (None where none was measured: tls_handshake over plain TCP)."""
    hists = {n: setup.get(n) or Hist.empty() for n in SETUP_NAMES}
    out = {"connections": hists["connect"].total}
    for name, h in hists.items():
        out[name] = h.summary_ms() if h.total else None
    return out


COUNTER_NAMES = ("scheduled", "sent", "completed", "ok", "shed")
# Arrival processes whose expected count over a run is rate x duration, up to known noise.
_COUNTED_ARRIVALS = ("constant", "poisson")
MESSAGES_PER_KIND = 3
# A run keeps the histograms of its newest intervals only: older ones are folded into the
# totals and written to the runlog, and an hour at one interval a second would otherwise hold
# ~14,000 histograms (Intervals, IntervalSnapshot.pack).
KEEP_INTERVAL_HISTS = 60


def _lag_reason(lag_p99_ms: float, bound_ms: float, cpu: dict | None) -> str:
    """Why the scheduler was late, by what the client's CPU shows: a client out of CPU needs
    more processes; a client with idle CPU was woken late by its host (other work on its cores,
    or a noisy virtual machine), which no client setting fixes."""
    head = f"scheduler lag p99 {lag_p99_ms:.3f} ms > {bound_ms:g} ms"
    if cpu is None or cpu["saturated"]:
        busy = f" (up to {cpu['max_cores']:.2f} cores)" if cpu else ""
        return (f"{head}: the client was CPU-bound{busy} and could not send on time; use "
                "--workers, --batch-window or a lower rate")
    return (f"{head} while the client used {cpu['mean_cores']:.2f} cores: its host woke it "
            "late (other work on its cores, or a noisy virtual machine); latencies include "
            "the lag, so give an SLO (--slo), whose bound sets the tolerance, or a quieter host")


def _zero_errors() -> dict:
    return {k: 0 for k in ERROR_KINDS}


# What a released interval holds in place of its histograms: one shared, read-only mapping.
_RELEASED = MappingProxyType({})


@dataclass(slots=True)
class IntervalSnapshot:
    """One interval of one run (or several workers' same interval, merged).

    t_s is the interval's end in seconds since the run's start; dur_s its length. A `drain`
    interval holds what completed after the load window ended.
    """

    index: int
    t_s: float
    dur_s: float
    scheduled: int = 0
    sent: int = 0
    completed: int = 0
    ok: int = 0
    shed: int = 0
    by_error: dict = field(default_factory=_zero_errors)
    inflight: int = 0
    queued: int = 0
    connections: int = 0
    messages: list = field(default_factory=list)
    hists: dict = field(default_factory=dict)
    drain: bool = False
    # Per-class latency with a trace: {"by_class": {name: Hist}, "by_size": {bucket: Hist}},
    # classes with no completion left out.
    classes: dict = field(default_factory=dict)
    # Where the interval sits on CLOCK_MONOTONIC (the GPU sampler's clock), set by the engine.
    mono_start_ns: int = 0
    mono_end_ns: int = 0
    # GPU telemetry over this interval: {device id: crestline.telemetry.window figures}, or None.
    gpu: dict | None = None
    # The search fields, set by the search policy only (crestline.search.policy): the step
    # this interval belongs to (None during the warm-up hold), the rate offered, and whether
    # it was warm-up (the hold, or a step later discarded as warm-up). None: not known (a run,
    # or a runlog that did not record it).
    step: int | None = None
    rate_rps: float | None = None
    warmup: bool | None = None
    # The client's CPU seconds in the interval (set by the engine; summed over workers) and
    # the whole host's busy seconds (set by the session; None where unreadable): see
    # crestline.measure.cpu.
    cpu_s: float = 0.0
    host_busy_s: float | None = None
    # Set by a pool of remote engines (crestline.engine.ray): what went wrong with its members
    # in this interval (a dead actor, one behind its schedule, clocks that disagree), each a
    # line naming the member, and each member's own figures. Faults make a run's client_ok
    # false and a search step invalid.
    faults: list = field(default_factory=list)
    members: list | None = None
    # Set-up of the connections opened in the interval: {SETUP_NAMES name: Hist}.
    setup: dict = field(default_factory=dict)
    # Token-stream counters (crestline.measure.stream.STREAM_COUNTERS; empty: no stream ended);
    # the stream histograms are in `hists` under measure.stream.STREAM_HISTS names.
    stream: dict = field(default_factory=dict)
    # The JSON form of an interval rebuilt from its packed form (unpack), which has no
    # histograms to compute it from.
    _summary: dict | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_core(cls, index: int, t_s: float, dur_s: float, taken, drain: bool = False,
                  class_names=None):
        counters, *hists = taken
        snap = cls(index, t_s, dur_s, drain=drain)
        if class_names is not None and "classes" in counters:
            for family, names, takes in zip(CLASS_FAMILIES, class_names, counters["classes"],
                                            strict=True):
                snap.classes[family] = {n: Hist.from_take(t) for n, t in zip(names, takes,
                                                                            strict=True)
                                        if t[1]}
            for family, names, takes in zip(class_stream_families(CLASS_FAMILIES),
                                            tuple(class_names) * 2,
                                            counters.get("stream_classes", ()), strict=False):
                got = {n: Hist.from_take(t) for n, t in zip(names, takes, strict=True) if t[1]}
                if got:
                    snap.classes[family] = got
        for name in COUNTER_NAMES + ("inflight", "queued", "connections"):
            setattr(snap, name, int(counters[name]))
        snap.by_error = dict(counters["by_error"])
        snap.messages = [(kind, explain(msg)) for kind, msg in counters["messages"]]
        snap.hists = {name: Hist.from_take(h) for name, h in zip(HIST_NAMES, hists, strict=True)}
        if "setup" in counters:
            # Most intervals open no connection: nothing to keep, decode or write.
            snap.setup = {name: Hist.from_take(h)
                          for name, h in zip(SETUP_NAMES, counters["setup"], strict=True)
                          if h[1]}
        if "stream" in counters:
            stream_hists, snap.stream = stream_from_core(counters["stream"])
            snap.hists.update(stream_hists)
        return snap

    @property
    def errors(self) -> int:
        return sum(self.by_error.values())

    @property
    def latency(self) -> Hist:
        return self.hists["latency"]

    def merge(self, other: IntervalSnapshot) -> IntervalSnapshot:
        """Add another worker's same interval into this one (exact: counts add)."""
        for name in COUNTER_NAMES + ("inflight", "queued", "connections"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.by_error.items():
            self.by_error[k] = self.by_error.get(k, 0) + v
        self.messages += other.messages
        for name, h in other.hists.items():
            if name in self.hists:
                self.hists[name].add(h)
            else:
                self.hists[name] = h.copy()
        add_classes(self.classes, other.classes)
        add_setup(self.setup, other.setup)
        add_counts(self.stream, other.stream)
        self.dur_s = max(self.dur_s, other.dur_s)
        self.cpu_s += other.cpu_s
        self.mono_start_ns = self.mono_start_ns or other.mono_start_ns
        self.mono_end_ns = max(self.mono_end_ns, other.mono_end_ns)
        self.faults += [f for f in other.faults if f not in self.faults]
        return self

    def pack(self) -> bytes:
        """This interval as one compressed bytes object: every field but the histograms
        (hists, classes, setup), and its JSON form, which needs them. What a long run keeps of
        intervals already folded into its totals and its runlog (Intervals).

        Pickled (exact types, unlike JSON) and compressed against a preset dictionary, the
        packing of an empty interval, since every interval repeats the same keys. One object,
        not a snapshot's dozens (its ints and floats are objects too): a few hundred bytes
        where a snapshot stripped of its histograms held ~1.5 KB of the heap."""
        values = tuple(getattr(self, name) for name in _PACKED_FIELDS)
        z = zlib.compressobj(1, zdict=_pack_zdict())
        return z.compress(pickle.dumps((values, self.to_dict()), protocol=5)) + z.flush()

    @classmethod
    def unpack(cls, packed: bytes) -> IntervalSnapshot:
        """A snapshot from pack(): every field back, no histograms (read-only and empty),
        to_dict() the JSON form it had."""
        z = zlib.decompressobj(zdict=_pack_zdict())
        values, summary = pickle.loads(z.decompress(packed) + z.flush())
        snap = cls(**dict(zip(_PACKED_FIELDS, values, strict=True)), hists=_RELEASED,
                   classes=_RELEASED, setup=_RELEASED)
        snap._summary = summary
        return snap

    def to_dict(self) -> dict:
        if self._summary is not None:
            return self._summary
        lat = self.latency.summary_ms()
        lag = self.hists["send_lag"].values_at((99.0,))
        dur = self.dur_s or float("nan")
        d = {
            "t_s": round(self.t_s, 6),
            "dur_s": round(self.dur_s, 6),
            "drain": self.drain,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "completed": self.completed,
            "ok": self.ok,
            "errors": self.errors,
            "shed": self.shed,
            "by_error": dict(self.by_error),
            "inflight": self.inflight,
            "connections": self.connections,
            # The drain's rates would divide by a few ms of draining: not comparable, so null.
            "offered_rps": None if self.drain else self.scheduled / dur,
            "achieved_rps": None if self.drain else self.completed / dur,
            "latency_ms": {k: lat[k] for k in ("p50", "p90", "p99", "p999", "max")},
            "send_lag_ms": {"p99": lag[0] / 1e6},
            "client_cpu_cores": round(self.cpu_s / dur, 4) if self.dur_s else None,
            "host_busy_cores": (round(self.host_busy_s / dur, 4)
                                if self.dur_s and self.host_busy_s is not None else None),
            "gpu": self.gpu,
        }
        if self.step is not None or self.rate_rps is not None:
            d["step"] = self.step
            d["rate_rps"] = self.rate_rps
        if self.warmup is not None:
            d["warmup"] = self.warmup
        if self.stream:
            d["stream"] = interval_stream(self.hists, self.stream, self.dur_s)
        if self.faults:
            d["faults"] = list(self.faults)
        if self.members is not None:
            d["members"] = self.members
        return d


_PACKED_FIELDS = tuple(f.name for f in fields(IntervalSnapshot)
                       if f.name not in ("hists", "classes", "setup", "_summary"))


@functools.cache
def _pack_zdict() -> bytes:
    """The preset dictionary packed intervals are compressed against (in memory only)."""
    empty = IntervalSnapshot(0, 0.0, 1.0, hists={name: Hist.empty() for name in HIST_NAMES})
    values = tuple(getattr(empty, name) for name in _PACKED_FIELDS)
    return pickle.dumps((values, empty.to_dict()), protocol=5)


class Intervals(Sequence):
    """A run's intervals, oldest first. The newest `keep` are the snapshots themselves; each
    older one, already folded into the totals and written to the runlog, is held packed
    (IntervalSnapshot.pack) and rebuilt, without its histograms, whenever it is read."""

    __slots__ = ("keep", "_packed", "_live")

    def __init__(self, keep: int = KEEP_INTERVAL_HISTS):
        self.keep = keep
        self._packed: list[bytes] = []
        self._live: deque = deque()

    def append(self, snap: IntervalSnapshot) -> None:
        self._live.append(snap)
        if len(self._live) > self.keep:
            self._packed.append(self._live.popleft().pack())

    def __len__(self) -> int:
        return len(self._packed) + len(self._live)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n, packed = len(self), len(self._packed)
        k = i + n if i < 0 else i
        if not 0 <= k < n:
            raise IndexError(f"interval {i} of {n}")
        return IntervalSnapshot.unpack(self._packed[k]) if k < packed else self._live[k - packed]

    def __iter__(self):
        for packed in self._packed:
            yield IntervalSnapshot.unpack(packed)
        yield from self._live

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Intervals({len(self)}, {len(self._packed)} packed)"


@dataclass
class RunResult:
    """What a run measured; `to_dict()` is the `--out` JSON contract (docs/measurement.md)."""

    spec: dict
    started_unix_s: float
    intervals: Intervals = field(default_factory=Intervals)
    hists: dict = field(default_factory=lambda: {n: Hist.empty() for n in HIST_NAMES})
    counters: dict = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    by_error: dict = field(default_factory=_zero_errors)
    messages: dict = field(default_factory=dict)
    load_s: float = 0.0
    interrupted: bool = False
    warnings: list = field(default_factory=list)
    classes: dict = field(default_factory=dict)
    # {"source", "devices", "summary", "warnings"} when GPU telemetry was asked for.
    gpu: dict | None = None
    # The run's own SLO check (crestline run --slo): {"slo": {...}, "met": bool, "why": [...]}
    slo_check: dict | None = None
    # CPUs the client could run on (measure.cpu.host_cores), for the client's CPU summary.
    host_cores: int = 0
    setup: dict = field(default_factory=dict)
    stream: dict = field(default_factory=dict)  # token-stream counters, summed

    def add(self, snap: IntervalSnapshot) -> None:
        """Fold one (merged) interval into the totals."""
        self.intervals.append(snap)
        for name in COUNTER_NAMES:
            self.counters[name] += getattr(snap, name)
        for k, v in snap.by_error.items():
            self.by_error[k] = self.by_error.get(k, 0) + v
        for kind, msg in snap.messages:
            kept = self.messages.setdefault(kind, [])
            if len(kept) < MESSAGES_PER_KIND and msg not in kept:
                kept.append(msg)
        for name, h in snap.hists.items():
            self.hists.setdefault(name, Hist.empty()).add(h)  # stream hists come with streams
        add_classes(self.classes, snap.classes)
        add_setup(self.setup, snap.setup)
        add_counts(self.stream, snap.stream)
        if not snap.drain:
            self.load_s = snap.t_s

    # -- derived --------------------------------------------------------------------------------
    def _load_count(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.intervals if not s.drain)

    @property
    def latency(self) -> Hist:
        return self.hists["latency"]

    @property
    def offered_rps(self) -> float:
        """Slots the schedule offered per second of load (the realised rate, not the target)."""
        return self._load_count("scheduled") / self.load_s if self.load_s else 0.0

    @property
    def achieved_rps(self) -> float:
        """Responses (any status) completed per second while load was offered."""
        return self._load_count("completed") / self.load_s if self.load_s else 0.0

    def client_cpu(self) -> dict | None:
        """The client's CPU over the load (crestline.measure.cpu.client_cpu_summary)."""
        return client_cpu_summary(self.intervals, self.spec.get("workers") or 1,
                                  self.host_cores)

    def client_check(self) -> tuple[bool, list[str]]:
        """(client_ok, reasons): did the client itself offer its schedule on time?

        Three ways it did not (docs/measurement.md, "Did the client keep up?"): its scheduler
        woke late; it issued fewer requests than the arrival process calls for; or it was
        CPU-bound while requests waited to be written or completions fell behind the offered
        rate. Without the last condition's CPU evidence, a shortfall is the server's (a
        server at overload falls behind an open-loop client that keeps its schedule).
        """
        reasons = []
        for fault in dict.fromkeys(f for s in self.intervals for f in s.faults):
            reasons.append(fault)
        # A batch window delays slots by design, up to its length.
        bound_ms = self.spec.get("max_schedule_lag_p99_ms", 1.0) + 1e3 * self.spec.get(
            "batch_window_s", 0.0)
        lag_p99_ms = self.hists["schedule_lag"].values_at((99.0,))[0] / 1e6
        cpu = self.client_cpu()
        late = lag_p99_ms > bound_ms
        if late:
            reasons.append(_lag_reason(lag_p99_ms, bound_ms, cpu))
        target = self.spec.get("rate_rps") or 0.0
        ratio = self.spec.get("min_issued_ratio", 0.99)
        arrival = self.spec.get("arrival")
        scheduled = self._load_count("scheduled")
        if arrival in _COUNTED_ARRIVALS and target and self.load_s and not self.interrupted:
            expected = target * self.load_s
            # A constant schedule's count is exact; a Poisson count has sd sqrt(expected).
            slack = 1.0 if arrival == "constant" else 5.0 * math.sqrt(expected)
            if scheduled < ratio * expected - slack:
                reasons.append(f"issued {scheduled} of {expected:.0f} scheduled requests")
        # A late scheduler already blamed on the saturated CPU says it once, not twice.
        if cpu and cpu["saturated"] and not self.interrupted and not late:
            send_p99_ms = self.hists["send_lag"].values_at((99.0,))[0] / 1e6
            short = self.achieved_rps < ratio * self.offered_rps
            if send_p99_ms > bound_ms or short:
                reasons.append(
                    f"the client was CPU-bound (up to {cpu['max_cores']:.2f} cores) while "
                    f"requests waited to be written (send lag p99 {send_p99_ms:.1f} ms) and "
                    f"completions ran at {self.achieved_rps:,.0f} of {self.offered_rps:,.0f}/s "
                    "offered; use --workers, --batch-window or a lower rate")
        return (not reasons, reasons)

    def to_dict(self, intervals: bool = True) -> dict:
        """The `--out` JSON. intervals=False leaves `intervals` None, for a writer that
        streams them (crestline.outputs.write_json with interval_dicts()): an hour's
        3,600 interval dicts at once are ~15 MB."""
        ok, reasons = self.client_check()
        cpu = self.client_cpu()
        errors = sum(self.by_error.values())
        return {
            "kind": "run",
            "crestline": self.spec.get("version"),
            "url": self.spec.get("url"),
            "target_rps": self.spec.get("rate_rps"),
            "offered_rps": self.offered_rps,
            "achieved_rps": self.achieved_rps,
            "duration_s": self.load_s,
            "started_unix_s": self.started_unix_s,
            "interrupted": self.interrupted,
            "requests": {
                "scheduled": self.counters["scheduled"],
                "sent": self.counters["sent"],
                "completed": self.counters["completed"],
                "ok": self.counters["ok"],
                "errors": errors,
                "shed": self.counters["shed"],
                "by_error": dict(self.by_error),
                "error_messages": {k: list(v) for k, v in self.messages.items()},
            },
            "latency_ms": self.hists["latency"].summary_ms(),
            "latency_distribution_ms": self.hists["latency"].distribution_ms(),
            "service_ms": self.hists["service"].summary_ms(),
            "send_lag_ms": self.hists["send_lag"].summary_ms(),
            "schedule_lag_ms": self.hists["schedule_lag"].summary_ms(),
            "clamped": {n: h.clamped for n, h in self.hists.items()},
            "connection_setup_ms": setup_summary(self.setup),
            **stream_summary(self.hists, self.stream, self.load_s,
                             self.counters["ok"] + errors + self.counters["shed"]),
            "tls": tls_summary(self.spec),
            "client_ok": ok,
            "client_problems": reasons,
            "client_cpu": cpu,
            "warnings": list(self.warnings),
            "slo": self.slo_check["slo"] if self.slo_check else None,
            "slo_met": self.slo_check["met"] if self.slo_check else None,
            "slo_why": self.slo_check["why"] if self.slo_check else [],
            "gpu": self.gpu,
            "spec": self.spec,
            # per class: latency, and a stream's TTFT and TPOT (measure.stream)
            **{family: {name: {"completed": h.total, "latency_ms": h.summary_ms(),
                               **class_stream_ms(self.classes, family, name)}
                        for name, h in sorted(hists.items(), key=lambda kv: -kv[1].total)}
               for family, hists in self.classes.items() if family in CLASS_FAMILIES},
            "intervals": list(self.interval_dicts()) if intervals else None,
        }

    def interval_dicts(self):
        """Each interval's JSON form, oldest first, one at a time."""
        return (s.to_dict() for s in self.intervals)


def tls_summary(spec: dict) -> dict | None:
    """The result's `tls`: how the run's TLS was set up (None for plain TCP). insecure: the
    server's certificate was not verified (--insecure), said wherever the result is shown."""
    url = spec.get("url") or ""
    if not url.startswith(("https://", "grpcs://")):
        return None
    return {"verify": not spec.get("insecure", False), "insecure": bool(spec.get("insecure")),
            "cacert": spec.get("cacert"), "client_cert": bool(spec.get("cert"))}
