"""Exact merging across actors: what the driver merges from the actors' encoded intervals is
the histogram of every sample, bucket for bucket (pure; plus one trip through Ray's object
store, as the actors' intervals travel)."""

import numpy as np
import ray

from crestline.engine.ray.clock import (
    ClockOffset,
    clock_bound_ns,
    clock_faults,
    disagreement_ns,
    estimate_offset,
)
from crestline.engine.ray.members import member_faults
from crestline.engine.ray.wire import from_wire, to_wire
from crestline.measure.hdr import Hist
from crestline.measure.result import HIST_NAMES, IntervalSnapshot


def _part(rng, n, scale_ns, index=3):
    values = {name: (rng.lognormal(np.log(scale_ns), 1.0, n)).astype(np.int64) + 1
              for name in HIST_NAMES}
    snap = IntervalSnapshot(index, 2.0, 0.5, scheduled=n, sent=n, completed=n, ok=n)
    snap.hists = {name: Hist.from_values(v) for name, v in values.items()}
    snap.classes = {"by_class": {"a": Hist.from_values(values["latency"][: n // 2])}}
    return snap, values


def test_merged_encoded_parts_equal_one_histogram_of_all_samples(ray_local):
    rng = np.random.default_rng(5)
    # Different scales, so the parts fill different buckets and the tails come from one part.
    parts = [_part(rng, n, scale) for n, scale in ((20_000, 2e6), (7_000, 40e6), (1, 9e9))]
    wires = [ray.get(ray.put(to_wire(snap))) for snap, _ in parts]
    merged = from_wire(wires[0])
    for w in wires[1:]:
        merged.merge(from_wire(w))
    for name in HIST_NAMES:
        every = np.concatenate([values[name] for _, values in parts])
        truth = Hist.from_values(every)
        got = merged.hists[name]
        assert np.array_equal(got.counts, truth.counts), name
        assert (got.total, got.min_ns, got.max_ns) == (truth.total, truth.min_ns, truth.max_ns)
        assert got.values_at((50, 99, 99.9, 99.99, 100)) == truth.values_at(
            (50, 99, 99.9, 99.99, 100))
        assert got.mean_ns() == truth.mean_ns()
    assert merged.completed == sum(len(v["latency"]) for _, v in parts)
    halves = np.concatenate([v["latency"][: len(v["latency"]) // 2] for _, v in parts])
    assert np.array_equal(merged.classes["by_class"]["a"].counts,
                          Hist.from_values(halves).counts)


def test_the_encoded_interval_is_small_and_carries_no_samples():
    rng = np.random.default_rng(1)
    snap, _ = _part(rng, 50_000, 3e6)
    w = to_wire(snap)
    blob = w["hists"]["latency"][0]
    assert blob.startswith("HISTF") and len(blob) < 16_000  # 50k samples, a few KB
    assert not w["snap"].hists and not w["snap"].classes


def test_clock_offset_takes_the_smallest_round_trip_and_bounds_the_truth():
    true_offset = 5_000_000_000  # the actor's clock runs 5 s ahead
    rng = np.random.default_rng(2)
    samples = []
    for i in range(8):
        t0 = 1_000_000 * i
        out, back = rng.integers(50_000, 2_000_000, size=2)  # asymmetric legs
        samples.append((t0, t0 + out + true_offset, t0 + out + back))
    off = estimate_offset(samples)
    assert off.rtt_ns == min(t1 - t0 for t0, _, t1 in samples)
    assert abs(off.offset_ns - true_offset) <= off.uncertainty_ns
    assert off.to_driver_ns(off.to_actor_ns(123)) == 123


def test_clocks_that_may_disagree_past_the_bound_name_the_actors():
    tight = ClockOffset(10, 200_000, 400_000)
    loose = ClockOffset(-7, 3_000_000, 6_000_000)
    names = ["actor 0 on a", "actor 1 on b", "actor 2 on c"]
    bound = clock_bound_ns(1.0)
    assert bound == 10_000_000  # 1% of a 1 s interval, over the 2 ms floor
    assert clock_faults([tight, tight, tight], names, bound) == []
    assert disagreement_ns([tight, loose, loose]) == 6_000_000
    faults = clock_faults([tight, loose, loose], names, clock_bound_ns(0.1))
    assert len(faults) == 1 and "actor 1 on b" in faults[0] and "actor 2 on c" in faults[0]


def test_member_faults_name_the_member_behind_or_cut_off():
    rng = np.random.default_rng(3)
    ok, _ = _part(rng, 100, 1e6)
    cut, _ = _part(rng, 0, 1e6)
    cut.by_error = {"connect": 9}
    late = IntervalSnapshot(3, 2.0, 0.5, scheduled=10)
    late.hists = {"schedule_lag": Hist.from_values([300_000_000] * 10)}
    faults = member_faults({"actor 0": ok, "actor 1": cut, "actor 2": late}, 100_000_000)
    assert any(f.startswith("actor 1 lost its target") for f in faults), faults
    assert any(f.startswith("actor 2 fell behind its schedule") for f in faults), faults
    assert not any(f.startswith("actor 0") for f in faults)
    # every member cut off alike is the server's doing, not a client fault
    cut2, _ = _part(rng, 0, 1e6)
    cut2.by_error = {"connect": 4}
    assert member_faults({"actor 0": cut, "actor 1": cut2}, 100_000_000) == []
