"""The one place SLO kinds are listed. A new kind (TTFT, ITL, goodput) is a Bound subclass in
its own module, added here; parsing, runs, search steps and reports then all know it.
"""

from __future__ import annotations

from crestline.slo.bound import Bound
from crestline.slo.errors import ErrorBound
from crestline.slo.gpu import GpuBound
from crestline.slo.latency import LatencyBound
from crestline.slo.stream import STREAM_KINDS

# In the order a result's `slo`, `slo_why` and a step's `why` list them.
KINDS: list[type[Bound]] = [LatencyBound, ErrorBound, GpuBound, *STREAM_KINDS]


def register(kind: type[Bound]) -> type[Bound]:
    """Add a kind after the built-in ones (for harnesses and tests); returns it, so it also
    works as a class decorator."""
    if kind not in KINDS:
        KINDS.append(kind)
    return kind


def unregister(kind: type[Bound]) -> None:
    if kind in KINDS:
        KINDS.remove(kind)


def kind_of(key: str) -> type[Bound] | None:
    """The kind whose `--slo` key this is, or None."""
    return next((k for k in KINDS if k.claims(key)), None)


def rank(bound: Bound) -> tuple[int, float]:
    """Where a bound sorts: by kind, then by the kind's own order (percentile for latency)."""
    kind = type(bound)
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), bound.order)
