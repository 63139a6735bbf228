"""Token-stream figures (SSE responses): what the core recorded per interval, as data, and the
result's `ttft_ms`, `itl_ms`, `tpot_ms`, `e2e_ms`, `output_tokens` and `stream` keys.

Pure. The core records a streamed response when it succeeds (crestline._core `_stream_done`);
every figure is defined in docs/measurement.md, "Token streams".
"""

from __future__ import annotations

from crestline.measure.hdr import Hist

# The stream histograms, in the order the core takes them; they join an interval's `hists`
# under these names (what SLO kinds read). output_tokens holds counts, not nanoseconds.
STREAM_HISTS = ("ttft", "ttft_sent", "itl", "tpot", "e2e", "output_tokens")
# Per class (with a trace), the core keeps each class's TTFT and TPOT too: IntervalSnapshot.classes
# holds them as families "by_class:ttft", "by_size:ttft", "by_class:tpot", "by_size:tpot" (the
# core's order), so merging, the Ray wire and add_classes treat them as any class family.
CLASS_STREAM_KINDS = ("ttft", "tpot")
STREAM_COUNTERS = ("streams", "good", "tokens", "reasoning_tokens", "no_token", "no_done",
                   "usage", "usage_mismatch")


def stream_from_core(taken: dict) -> tuple[dict, dict]:
    """(histograms by name, counters) of the core's `counters["stream"]`; ({}, {}) when no
    stream completed in the interval, so a run without streams carries none of it."""
    if not taken["streams"]:
        return {}, {}
    hists = {n: Hist.from_take(t) for n, t in zip(STREAM_HISTS, taken["hists"], strict=True)}
    return hists, {n: int(taken[n]) for n in STREAM_COUNTERS}


def add_counts(into: dict, other: dict) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def goodput_fraction(counts: dict, ended: int) -> float | None:
    """Good streams over the requests that ended (ok, failed or shed); None when none did."""
    return counts.get("good", 0) / ended if ended else None


def pool_stream(snaps) -> tuple[dict, dict]:
    """(histograms by name, counters) of the stream figures of IntervalSnapshots, added
    exactly (histogram counts add); ({}, {}) when none of them streamed."""
    hists: dict = {}
    counts: dict = {}
    for s in snaps:
        if not s.stream:
            continue
        add_counts(counts, s.stream)
        for name in STREAM_HISTS:
            if name in s.hists:
                hists.setdefault(name, Hist.empty()).add(s.hists[name])
    return hists, counts


def stream_of(snaps, load_s: float) -> dict:
    """The stream keys of a search step or a sweep row (the run result's, stream_summary) over
    its measured intervals: load_s the seconds they cover, goodput over the requests that
    ended in them. Empty when nothing streamed."""
    hists, counts = pool_stream(snaps)
    ended = sum(s.ok + s.errors + s.shed for s in snaps)
    return stream_summary(hists, counts, load_s, ended)


def class_stream_families(families) -> list[str]:
    """The classes' stream families in the core's order (CLASS_STREAM_KINDS x families)."""
    return [f"{f}:{kind}" for kind in CLASS_STREAM_KINDS for f in families]


def class_stream_ms(classes: dict, family: str, name: str, pcts=None) -> dict:
    """{"ttft_ms": ..., "tpot_ms": ...} of one class (those it has): percentiles in ms, every
    summary percentile or just `pcts` (e.g. ("p50", "p99"))."""
    out = {}
    for kind in CLASS_STREAM_KINDS:
        h = classes.get(f"{family}:{kind}", {}).get(name)
        if h is not None and h.total:
            s = h.summary_ms()
            out[f"{kind}_ms"] = {k: s[k] for k in pcts} if pcts else s
    return out


def _pct_ms(h: Hist) -> dict:
    s = h.summary_ms()
    return {k: s[k] for k in ("p50", "p90", "p99", "p999", "max", "mean")}


def interval_stream(hists: dict, counts: dict, dur_s: float) -> dict:
    """An interval's `stream` entry: tokens/s over time, and its TTFT and ITL tails."""
    return {"streams": counts["streams"], "good": counts["good"],
            "output_tokens_per_s": counts["tokens"] / dur_s if dur_s else None,
            "ttft_ms": {"p50": _pct_ms(hists["ttft"])["p50"], "p99": _pct_ms(hists["ttft"])["p99"]},
            "itl_ms": {"p99": _pct_ms(hists["itl"])["p99"]}}


def stream_summary(hists: dict, counts: dict, load_s: float, ended: int) -> dict:
    """The run result's stream keys (empty when nothing streamed): percentiles of each time in
    ms, output tokens per request and per second, goodput, and how tokens were counted."""
    if not counts.get("streams"):
        return {}
    tok = hists["output_tokens"]
    p50, p90, p99 = tok.capped_values_at((50.0, 90.0, 99.0))
    def per_s(n):
        return (n / load_s if load_s else None)
    return {
        "ttft_ms": _pct_ms(hists["ttft"]),
        "ttft_sent_ms": _pct_ms(hists["ttft_sent"]),
        "itl_ms": _pct_ms(hists["itl"]),
        "tpot_ms": _pct_ms(hists["tpot"]),
        "e2e_ms": _pct_ms(hists["e2e"]),
        # the HDR percentile spectra a report plots, [[percentile, ms], ...]
        "stream_distribution_ms": {n: hists[n].distribution_ms() for n in ("ttft", "itl",
                                                                            "tpot")},
        "output_tokens": {"total": counts["tokens"], "per_s": per_s(counts["tokens"]),
                          "per_request": {"p50": p50, "p90": p90, "p99": p99,
                                          "max": tok.max_ns if tok.total else 0,
                                          "mean": tok.mean_ns()}},
        "stream": {
            "streams": counts["streams"],
            "requests_per_s": per_s(counts["streams"]),
            "good": counts["good"],
            "goodput_rps": per_s(counts["good"]),
            "goodput_fraction": goodput_fraction(counts, ended),
            "reasoning_tokens": counts["reasoning_tokens"],
            "no_token": counts["no_token"],
            "no_done": counts["no_done"],
            # How output tokens were counted: the server's usage where it sent one, else the
            # token events; a mismatch (multi-token chunks, a server miscounting) is flagged.
            "usage_counted": counts["usage"],
            "events_counted": counts["streams"] - counts["usage"],
            "usage_mismatch": counts["usage_mismatch"],
        },
    }
