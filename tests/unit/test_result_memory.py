"""A long run holds the histograms of its newest intervals only, and loses no figure."""

import gc
import tracemalloc

import numpy as np

from crestline.api import _add_warnings
from crestline.engine.spec import RunSpec
from crestline.measure.hdr import Hist
from crestline.measure.result import (
    HIST_NAMES,
    KEEP_INTERVAL_HISTS,
    Intervals,
    IntervalSnapshot,
    RunResult,
)


def _interval(i: int, rng) -> IntervalSnapshot:
    values = rng.lognormal(np.log(2e6), 0.5, 200).astype(np.int64)
    hists = {n: Hist.from_values(values) for n in HIST_NAMES}
    return IntervalSnapshot(i, i + 1.0, 1.0, scheduled=200, sent=200, completed=200, ok=200,
                            hists=hists)


def test_old_intervals_release_their_histograms_and_keep_their_json():
    rng = np.random.default_rng(1)
    n = KEEP_INTERVAL_HISTS + 25
    snaps = [_interval(i, rng) for i in range(n)]
    before = [s.to_dict() for s in snaps]
    every = Hist.empty()
    for s in snaps:
        every.add(s.hists["latency"])
    r = RunResult(spec={"rate_rps": 200.0, "arrival": "constant"}, started_unix_s=0.0)
    for s in snaps:
        r.add(s)
    released = [s for s in r.intervals if not s.hists]
    assert len(released) == n - KEEP_INTERVAL_HISTS == len(r.intervals._packed)
    assert all(s.hists for s in r.intervals[-KEEP_INTERVAL_HISTS:])
    # every field but the histograms comes back from the packed form
    for old, back in zip(snaps, r.intervals, strict=True):
        for name in ("index", "t_s", "dur_s", "scheduled", "completed", "by_error", "cpu_s"):
            assert getattr(back, name) == getattr(old, name)
    assert r.intervals[3].t_s == 4.0 and r.intervals[-1] is snaps[-1]
    # The JSON of every interval is what it was, and the totals are exact.
    assert r.to_dict()["intervals"] == before
    assert r.hists["latency"].total == every.total == 200 * n
    assert r.latency.values_at((50.0, 99.0)) == every.values_at((50.0, 99.0))


def test_an_hour_of_released_intervals_stays_small():
    # An hour at 1 s intervals keeps 3,600 released intervals. Each is one packed bytes
    # object of ~300 bytes here. As a snapshot stripped of its histograms (slots, shared
    # empty fields, its summary compressed) it was ~600 bytes in this test and ~1.5 KB of
    # the heap in the hour's soak, where its ints and floats were objects of their own;
    # as a dict-backed snapshot with plain zlib ~1.4 KB here: +10 % of a 50 MB client an hour.
    rng = np.random.default_rng(2)
    kept = Intervals(keep=0)
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1000):
            s = _interval(i, rng)
            s.cpu_s, s.mono_start_ns, s.mono_end_ns = 0.0123 * i, 10**12 + i, 10**12 + i + 1
            kept.append(s)
        del s
        gc.collect()
        per_interval = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_interval < 400, per_interval
    assert [s.to_dict()["completed"] for s in kept] == [200] * len(kept)
    assert kept[7].to_dict()["t_s"] == 8.0 and kept[7].hists == {} and kept[7].faults == []
    assert kept[7].cpu_s == 0.0123 * 7 and kept[7].mono_end_ns == 10**12 + 8


def test_the_end_of_a_long_run_does_not_rebuild_every_interval_at_once():
    # The summary reads every interval (client CPU, client check); an old interval is rebuilt
    # from its packed form as it is read, and must be let go before the next: a list of them
    # all cost ~6 KB an interval of peak memory here (+8 MiB RSS at the end of the hour's soak).
    rng = np.random.default_rng(3)
    r = RunResult(spec={"rate_rps": 200.0, "arrival": "constant"}, started_unix_s=0.0,
                  host_cores=2)
    spec = RunSpec(url="http://127.0.0.1:9/", rate_rps=200.0, duration_s=1000.0,
                   connections=4)
    for i in range(1000):
        s = _interval(i, rng)
        s.cpu_s, s.host_busy_s = 0.25 + (i == 500), 1.0
        s.connections = 4  # all open: a list of those was every interval rebuilt at once
        r.add(s)
    del s
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _add_warnings(r, spec)  # what run_async does at the end, before the summary
        d = r.to_dict(intervals=False)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 1_500_000, peak
    assert d["intervals"] is None
    assert any("waited for a free connection" in w for w in r.warnings), r.warnings
    assert d["client_cpu"]["max_cores"] == 1.25 and d["client_cpu"]["mean_cores"] == 0.251
    assert d["client_cpu"]["host_busy_cores"] == 1.0
