"""An interval snapshot as an actor sends it: counters as they are, every histogram in
HdrHistogram's V2 encoding (compressed counts, a few KB) with its exact total, min, max and
clamped count beside it, so the driver's merge is exact. Never raw samples."""

from __future__ import annotations

import dataclasses

from crestline.measure.hdr import Hist
from crestline.measure.result import IntervalSnapshot

Encoded = tuple[str, int, int, int, int]  # (V2 base64, total, min_ns, max_ns, clamped)
# Fields holding {name: Hist} (connection set-up times where the snapshot has them).
_FLAT = tuple(f for f in ("hists", "setup") if f in IntervalSnapshot.__dataclass_fields__)


def encode_hist(h: Hist) -> Encoded:
    return (h.encode(), h.total, h.min_ns, h.max_ns, h.clamped)


def decode_hist(e: Encoded) -> Hist:
    blob, total, min_ns, max_ns, clamped = e
    h = Hist.decode(blob)
    h.total, h.min_ns, h.max_ns, h.clamped = total, min_ns, max_ns, clamped
    return h


def to_wire(snap: IntervalSnapshot) -> dict:
    """{"snap": the snapshot without histograms, then each histogram field encoded}."""
    w = {f: {n: encode_hist(h) for n, h in getattr(snap, f).items()} for f in _FLAT}
    w["classes"] = {f: {n: encode_hist(h) for n, h in hs.items()}
                    for f, hs in snap.classes.items()}
    w["snap"] = dataclasses.replace(snap, classes={}, **{f: {} for f in _FLAT})
    return w


def from_wire(w: dict) -> IntervalSnapshot:
    snap = w["snap"]
    for f in _FLAT:
        setattr(snap, f, {n: decode_hist(e) for n, e in w[f].items()})
    snap.classes = {f: {n: decode_hist(e) for n, e in hs.items()}
                    for f, hs in w["classes"].items()}
    return snap
