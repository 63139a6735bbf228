"""Workloads from recorded traces: rendering once, replay timing, and the recorded mix."""

import numpy as np
import pytest

from crestline.engine.spec import RunSpec
from crestline.engine.workload import Workload
from crestline.errors import ConfigError
from crestline.trace.format import TraceRecord, TraceWriter


@pytest.fixture
def trace_file(tmp_path):
    path = tmp_path / "t.cltrace"
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.exponential(5e6, size=600)).astype(np.int64)  # ~200 rps
    kinds = [("/v2/models/ranker/infer", b'{"n": 100}'), ("/v2/models/ranker/infer", b'{"n": 5}'),
             ("/v2/models/embed/infer", b'{"text": "x"}')]
    weights = [0.6, 0.3, 0.1]
    picks = rng.choice(3, size=600, p=weights)
    with TraceWriter(path, source="test", base_url="http://prod:8000") as w:
        for off, k in zip(t - t[0], picks, strict=True):
            p, body = kinds[k]
            w.write(TraceRecord(int(off), "POST", p, [("Content-Type", "application/json")],
                                body, {"model": p.split("/")[3]}))
    return path, t - t[0], picks


def spec_for(path, **kw):
    return RunSpec("http://127.0.0.1:9000/", 100, 2, trace=str(path), **kw).validated()


def test_distinct_requests_are_rendered_once_for_the_target(trace_file):
    path, _, picks = trace_file
    w = Workload.for_spec(spec_for(path, headers=[("X-Run", "1")]))
    assert w.records == 600 and len(w.payloads) == 3
    raw = w.payloads[w.record_payload[0]]
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /v2/models/")
    assert b"Host: 127.0.0.1:9000" in head  # the run's target, not the recorded host
    assert b"Content-Type: application/json" in head and b"X-Run: 1" in head
    assert f"Content-Length: {len(body)}".encode() in head
    # the same record kinds map to the same payloads
    assert len({(int(k), int(p)) for k, p in zip(picks, w.record_payload, strict=True)}) == 3


def test_trace_arrival_replays_the_timestamps_scaled_by_speed(trace_file):
    path, offsets, _ = trace_file
    w = Workload.for_spec(spec_for(path))
    chunks = list(w.chunks(w.arrival("trace", speed=2.0), 0, duration_s=1e9, seed=None))
    offs = np.concatenate([c[0] for c in chunks])
    pidx = np.concatenate([c[1] for c in chunks])
    assert np.array_equal(offs, (offsets / 2.0).astype(np.int64))
    assert np.array_equal(pidx, w.record_payload)
    # two workers split the records between them, each keeping the recorded times
    parts = [np.concatenate([c[0] for c in w.chunks(w.arrival("trace"), 0, 1e9, None, k, 2)])
             for k in (0, 1)]
    assert np.array_equal(np.sort(np.concatenate(parts)), offsets)
    # a duration cuts the replay; loop=True repeats it with the trace's own period
    short = np.concatenate([c[0] for c in w.chunks(w.arrival("trace"), 0, 1.0, None)])
    assert short.max() < 1e9 and len(short) == int((offsets < 1e9).sum())
    looped = np.concatenate([c[0] for c in w.chunks(
        w.arrival("trace"), 0, 2.5 * w.trace_duration_s(), None, loop=True)])
    assert len(looped) > 2 * 600 and np.all(np.diff(looped) >= 0)


def test_synthetic_arrivals_keep_the_recorded_mix(trace_file):
    path, _, picks = trace_file
    w = Workload.for_spec(spec_for(path))
    chunks = list(w.chunks(w.arrival("poisson"), 5000.0, 10.0, seed=1))
    pidx = np.concatenate([c[1] for c in chunks])
    assert abs(len(pidx) - 50_000) < 5 * np.sqrt(50_000)
    recorded = np.bincount(w.record_payload, minlength=3) / 600
    drawn = np.bincount(pidx, minlength=3) / len(pidx)
    assert np.allclose(drawn, recorded, atol=0.01)


def test_trace_options_are_checked(tmp_path, trace_file):
    path, _, _ = trace_file
    with pytest.raises(ConfigError, match="needs --trace"):
        RunSpec("http://127.0.0.1:9000/", 100, 2, arrival="trace").validated()
    with pytest.raises(ConfigError, match="not found"):
        RunSpec("http://127.0.0.1:9000/", 100, 2, trace=str(tmp_path / "no.cltrace")).validated()
    with pytest.raises(ConfigError, match="holds the bodies"):
        RunSpec("http://127.0.0.1:9000/", 100, 2, trace=str(path), body=b"x").validated()


def test_fitted_arrivals_keep_burstiness_at_a_new_rate(tmp_path):
    # An on/off trace: bursts at 2000 rps for 50 ms, then 200 ms of quiet (mean ~400 rps).
    rng = np.random.default_rng(4)
    times, t = [], 0.0
    while len(times) < 20_000:
        n = rng.poisson(100)
        times += list(t + np.sort(rng.uniform(0, 0.05, n)))
        t += 0.25
    off = (np.array(times[:20_000]) * 1e9).astype(np.int64)
    path = tmp_path / "bursty.cltrace"
    with TraceWriter(path, source="test") as w:
        for o in off - off[0]:
            w.write(TraceRecord(int(o), "GET", "/", [], b""))
    wl = Workload.for_spec(spec_for(path))
    trace_rate = wl.trace_rate_rps()

    def dispersion(offsets_ns, window_s):
        counts = np.bincount((offsets_ns // int(window_s * 1e9)).astype(np.int64))
        return counts.var() / counts.mean()

    gaps = np.diff(off)
    cv_trace = gaps.std() / gaps.mean()
    target = 3 * trace_rate
    fit = np.concatenate([c[0] for c in wl.chunks(wl.arrival("fitted"), target, 30.0, seed=1)])
    pois = np.concatenate([c[0] for c in wl.chunks(wl.arrival("poisson"), target, 30.0, seed=1)])
    assert len(fit) / 30.0 == pytest.approx(target, rel=0.05)
    fgaps = np.diff(fit)
    assert fgaps.std() / fgaps.mean() == pytest.approx(cv_trace, rel=0.15)
    # windows holding the same expected count as 50 ms of the trace (a burst, or quiet)
    assert dispersion(fit, 0.05 / 3) > 10 * dispersion(pois, 0.05 / 3)
    assert dispersion(off - off[0], 0.05) > 10


def test_a_trace_replay_follows_the_stage_rate_when_no_speed_is_fixed(trace_file):
    # In a search a rate is a replay speed: twice the trace's own rate replays it twice as fast.
    path, offsets, _ = trace_file
    w = Workload.for_spec(spec_for(path))
    rate = 2.0 * w.trace_rate_rps()
    follow = np.concatenate([c[0] for c in w.chunks(w.arrival("trace", speed=None), rate, 1e9,
                                                     None)])
    fixed = np.concatenate([c[0] for c in w.chunks(w.arrival("trace", speed=2.0), 0, 1e9, None)])
    assert np.abs(follow - fixed).max() <= 1


def test_a_trace_whose_requests_share_one_timestamp_cannot_set_a_replay_speed(tmp_path):
    path = tmp_path / "flat.cltrace"
    with TraceWriter(path, source="test") as tw:
        for _ in range(3):
            tw.write(TraceRecord(0, "GET", "/", [], b""))
    w = Workload.for_spec(spec_for(path))
    with pytest.raises(ConfigError, match="one timestamp"):
        list(w.chunks(w.arrival("trace", speed=None), 100.0, 1.0, None))
