"""What to send: the pre-rendered requests of a run and the schedule that picks them.

A single request (the default) or a recorded trace. Every distinct request is rendered to
bytes once, when the workload loads; per request the engine only picks an index. The timing
comes from an arrival process (crestline.engine.arrivals): "trace" and "fitted" replay the
recorded timing with the request recorded at each slot; "constant" and "poisson" draw a
recorded request at random for each slot, so the recorded payload mix is kept at any rate.

Conversations: records whose extras carry a `conversation` id (and a `turn` number, and the
`think_s` before it) are turns. Only first turns enter the arrival process; the core sends
each later turn its think time after the previous turn of its conversation ended
(crestline._core, `turns`), so every turn is its own payload.

Pure: numpy and the trace reader, never the compiled core.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from crestline.engine.arrivals import Arrival, arrival_for, pass_duration_s
from crestline.engine.spec import RunSpec, encode_path, render_request
from crestline.redact import MASK, shown_warning

MAX_NAMED_CLASSES = 20  # model/path classes reported by name; the rest are "other"
SIZE_BUCKETS = ((1 << 10, "<=1KiB"), (4 << 10, "<=4KiB"), (16 << 10, "<=16KiB"),
                (64 << 10, "<=64KiB"), (256 << 10, "<=256KiB"), (None, ">256KiB"))


def size_bucket(nbytes: int) -> int:
    for i, (top, _) in enumerate(SIZE_BUCKETS):
        if top is None or nbytes <= top:
            return i
    return len(SIZE_BUCKETS) - 1


@dataclass
class Workload:
    payloads: list[bytes]
    record_payload: np.ndarray | None = None  # per trace record: index into payloads
    record_offsets_ns: np.ndarray | None = None  # per trace record, from the trace's origin
    source: str = "single request"
    # Per payload: its class by model (or path) and by body size, for per-class results.
    class_names: tuple[list[str], list[str]] | None = None
    payload_classes: tuple[np.ndarray, np.ndarray] | None = None
    # Trace headers whose value was redacted at recording (redact.MASK): left out of every
    # request, since the trace does not hold them; -H supplies them.
    redacted_headers: tuple[str, ...] = ()
    # Conversations: per payload the next turn's payload (-1: none) and its think time (ns).
    next_turn: np.ndarray | None = None
    think_ns: np.ndarray | None = None
    conversations: int = 0

    @classmethod
    def for_spec(cls, spec: RunSpec) -> Workload:
        if not spec.trace:
            return cls([spec.request_bytes()])
        from crestline.trace.format import read_trace

        trace = read_trace(spec.trace)
        host = spec.target.host_header
        from collections import Counter

        from crestline.trace.info import model_of

        index: dict = {}
        payloads: list[bytes] = []
        convs = _conversations(trace.records)
        kinds: list[tuple[str, int]] = []  # per payload: (model or path, body bytes)
        rec_payload = np.empty(len(trace.records), dtype=np.int32)
        redacted: set[str] = set()
        for i, r in enumerate(trace.records):
            kept = [h for h in r.headers if h[1] != MASK]
            if len(kept) < len(r.headers):
                redacted |= {n for n, v in r.headers if v == MASK}
            raw = render_request(r.method, encode_path(r.path), host,
                                 kept + spec.headers, r.body)
            # a turn is its own payload: its successor and think time are the payload's
            key = raw if convs is None else (raw, i)
            j = index.get(key)
            if j is None:
                j = index[key] = len(payloads)
                payloads.append(raw)
                kinds.append((model_of(r) or r.path.split("?", 1)[0], len(r.body)))
            rec_payload[i] = j
        if not payloads:
            from crestline.errors import ConfigError

            raise ConfigError(f"--trace {spec.trace!r} holds no requests")
        # The most frequent classes (by recorded requests) are named; the rest pool as "other".
        freq = Counter(kinds[p][0] for p in rec_payload.tolist())
        named = [n for n, _ in freq.most_common(MAX_NAMED_CLASSES)]
        if len(freq) > MAX_NAMED_CLASSES:
            named.append("other")
        slot = {n: k for k, n in enumerate(named)}
        other = slot.get("other", 0)
        by_name = np.array([slot.get(n, other) for n, _ in kinds], dtype=np.int32)
        by_size = np.array([size_bucket(b) for _, b in kinds], dtype=np.int32)
        offsets = trace.offsets_ns
        w = cls(payloads, rec_payload, offsets, f"trace {spec.trace}",
                (named, [label for _, label in SIZE_BUCKETS]), (by_name, by_size),
                tuple(sorted(redacted, key=str.lower)))
        if convs is not None:
            firsts, nxt, think = convs
            w.next_turn = np.full(len(payloads), -1, dtype=np.int32)
            w.think_ns = np.zeros(len(payloads), dtype=np.int64)
            for i, n in enumerate(nxt):
                if n >= 0:
                    w.next_turn[rec_payload[i]] = rec_payload[n]
                w.think_ns[rec_payload[i]] = think[i]
            # only first turns follow the arrival process
            w.record_payload, w.record_offsets_ns = rec_payload[firsts], offsets[firsts]
            w.conversations = len(firsts)
        return w

    def secret_warnings(self, spec: RunSpec) -> list[str]:
        """What a result says about secrets: values shown (--show-secrets), or recorded
        values left out of a replay and not given with -H."""
        out = []
        if spec.show_secrets:
            names = spec.redaction.names(spec.headers)
            if names:
                out.append(shown_warning(names))
        given = {n.lower() for n, _ in spec.headers}
        missing = [n for n in self.redacted_headers if n.lower() not in given]
        if missing:
            out.append(f"the trace holds no values for {', '.join(missing)} (redacted when "
                       f"recorded): they are not sent; give them with -H 'NAME: VALUE'")
        return out

    def core_turns(self):
        """The core's `turns` argument (next payload, think ns), or None without
        conversations."""
        if self.next_turn is None:
            return None
        return (self.next_turn, self.think_ns)

    def core_classes(self):
        """The core's `classes` argument, or None without a trace."""
        if self.payload_classes is None:
            return None
        (a, b), (na, nb) = self.payload_classes, self.class_names
        return ((a, len(na)), (b, len(nb)))

    @property
    def records(self) -> int:
        return 0 if self.record_payload is None else len(self.record_payload)

    def trace_duration_s(self, speed: float = 1.0) -> float:
        """How long one pass over the trace lasts at `speed` (see pass_duration_s)."""
        o = self.record_offsets_ns
        return 0.0 if o is None else pass_duration_s(o, speed)

    def trace_rate_rps(self) -> float:
        d = self.trace_duration_s()
        return self.records / d if d else 0.0

    def arrival(self, name: str, speed: float | None = 1.0) -> Arrival:
        """The arrival process `name` over this workload (the trace's timing, if it needs it).
        speed None: a trace replay's speed follows each stage's rate. Raises ConfigError."""
        return arrival_for(name, self.record_offsets_ns, speed)

    def chunks(self, arrival: Arrival, rate_rps: float, duration_s: float, seed: int | None,
               worker: int = 0, workers: int = 1,
               loop: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(offsets ns, payload indices or None) chunks of one worker's share of a stage.

        A slot the arrival ties to a recorded request sends that request; otherwise, with a
        trace, each slot draws a recorded request at random (seeded), so the recorded payload
        mix is kept at any rate."""
        rng = np.random.default_rng(np.random.SeedSequence(
            [seed if seed is not None else 0, worker, 7]))
        for offs, records in arrival.chunks(rate_rps, duration_s, seed, worker, workers, loop):
            if self.record_payload is None:
                yield offs, None
            elif records is not None:
                yield offs, self.record_payload[records]
            else:
                picks = rng.integers(0, len(self.record_payload), size=len(offs))
                yield offs, self.record_payload[picks]


def _conversations(records) -> tuple[np.ndarray, list[int], list[int]] | None:
    """(first-turn record indices, per record the next turn's record or -1, per record its
    think time in ns) when records carry extras["conversation"]; None when none does. Turns
    order by extras["turn"] (else their order in the trace); a record without a conversation
    is a conversation of one turn."""
    if not any((r.extras or {}).get("conversation") is not None for r in records):
        return None
    by_conv: dict = {}
    for i, r in enumerate(records):
        e = r.extras or {}
        conv = e.get("conversation")
        by_conv.setdefault(("one", i) if conv is None else ("conv", conv), []).append(
            (e.get("turn", 0), i))
    nxt = [-1] * len(records)
    think = [0] * len(records)
    firsts = []
    for turns in by_conv.values():
        turns.sort()
        firsts.append(turns[0][1])
        for (_, a), (_, b) in itertools.pairwise(turns):
            nxt[a] = b
        for _, i in turns[1:]:
            think[i] = int(float((records[i].extras or {}).get("think_s", 0.0)) * 1e9)
    return np.array(sorted(firsts), dtype=np.int64), nxt, think
