"""The discrete-event twin (crestline.search.sim) against queueing theory and its own
bookkeeping."""

import subprocess
import sys

import numpy as np
import pytest

from crestline.errors import ConfigError
from crestline.measure.hdr import Hist, index_of
from crestline.search.sim import (
    SimEngine,
    SimServer,
    erlang_c,
    mmc_capacity_rps,
    mmc_sojourn_sf,
    sim_capacity_rps,
)

MU = 500.0  # 2 ms mean service


def run(engine: SimEngine, rate_rps: float, n: int, skip: int = 0) -> Hist:
    """Latency over n intervals at rate_rps, after skipping `skip` intervals."""
    for _ in range(skip):
        engine.interval(rate_rps)
    h = Hist.empty()
    for _ in range(n):
        h.add(engine.interval(rate_rps).latency)
    return h


def at_least(h: Hist, ns: float) -> int:
    """How many recorded values lie in or above the bucket of ns."""
    return int(h.counts[int(index_of(np.array([ns]))[0]):].sum())


def mmc_p99_s(rate_rps: float) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mmc_sojourn_sf(mid, rate_rps, MU, 4) > 0.01 else (lo, mid)
    return hi


# -- ground truth ------------------------------------------------------------------------------
def test_mmc_formula_matches_the_worked_example():
    # algorithms.md §3.3: M/M/4, 2 ms, p99 ≤ 10 ms → 1212.5/s (Erlang C 0.295); ≤ 20 ms → 1750.5.
    assert mmc_capacity_rps(99, 0.010, MU, 4) == pytest.approx(1212.5, abs=0.1)
    assert erlang_c(4, 1212.46 / MU) == pytest.approx(0.295, abs=1e-3)
    assert mmc_capacity_rps(99, 0.020, MU, 4) == pytest.approx(1750.5, abs=0.1)
    assert mmc_capacity_rps(95, 0.010, MU, 4) == pytest.approx(1630.4, abs=0.1)
    # c = 1 has a closed form; p99.9 ≤ 10 ms is out of reach even idle (13.8 ms).
    assert mmc_capacity_rps(99, 0.010, MU, 1) == pytest.approx(MU - np.log(100) / 0.010, rel=1e-8)
    assert mmc_capacity_rps(99.9, 0.010, MU, 4) == 0.0


def test_mmc_sojourn_is_continuous_where_theta_equals_mu():
    # θ = cμ - λ = μ at λ = (c-1)μ: the general formula divides by zero there.
    at = mmc_sojourn_sf(0.01, 3 * MU, MU, 4)
    assert mmc_sojourn_sf(0.01, 3 * MU * (1 - 1e-9), MU, 4) == pytest.approx(at, rel=1e-7)
    assert mmc_sojourn_sf(0.01, 3 * MU * (1 + 1e-9), MU, 4) == pytest.approx(at, rel=1e-7)
    assert mmc_sojourn_sf(0.0, 1000, MU, 4) == 1.0
    assert mmc_sojourn_sf(0.01, 2000, MU, 4) == 1.0  # unstable


@pytest.mark.parametrize("rate_rps, tol", [(500, 0.03), (1000, 0.03), (1500, 0.06)])
def test_simulated_mmc_p99_matches_erlang_c(rate_rps, tol):
    # ~200 s of virtual time; at ρ = 0.75 the p99 estimate still wanders a few % between seeds.
    h = run(SimEngine(SimServer(4, 2.0, "exp"), seed=11), rate_rps, 200, skip=5)
    assert h.values_at((99.0,))[0] / 1e9 == pytest.approx(mmc_p99_s(rate_rps), rel=tol)


def test_littles_law():
    rate = 1500.0
    a = rate / MU
    mean_t_s = 1 / MU + erlang_c(4, a) / (4 * MU - rate)
    e = SimEngine(SimServer(4, 2.0, "exp"), seed=5, interval_s=0.05)
    inflight, lat = [], Hist.empty()
    for k in range(3000):
        snap = e.interval(rate)
        if k >= 20:
            inflight.append(snap.inflight)
            lat.add(snap.latency)
    assert lat.mean_ns() / 1e9 == pytest.approx(mean_t_s, rel=0.03)
    assert np.mean(inflight) == pytest.approx(rate * mean_t_s, rel=0.05)


def test_simulated_mdc_capacity_near_the_computed_value():
    # algorithms.md §3.3: M/D/4, 2 ms, p99 ≤ 10 ms → 1739.5/s. Short probes: ±1% noise.
    got = sim_capacity_rps(SimServer(4, 2.0, "const"), 99, 0.010, requests=300_000, rtol=2e-3)
    assert got == pytest.approx(1739.5, rel=0.02)


# -- behaviours --------------------------------------------------------------------------------
def test_one_worker_below_capacity_latency_is_the_service_time():
    e = SimEngine(SimServer(1, 2.0, "const"), arrival="constant")
    h = run(e, 400, 3)  # a slot every 2.5 ms, 2 ms each: nobody waits
    assert h.total == 1200
    assert h.min_ns == h.max_ns == 2_000_000


def test_constant_arrivals_keep_their_phase_across_rates():
    e = SimEngine(SimServer(4, 1.0), arrival="constant")
    assert [e.interval(333.5).scheduled for _ in range(2)] == [334, 333]
    assert e.interval(1000).scheduled == 1000
    assert sum(e.interval(0.5).scheduled for _ in range(4)) == 2


def test_a_stall_delays_arrivals_during_it_and_work_in_service():
    # One worker, 0.6 ms each, a slot every 1 ms; a 100 ms stall from 1.4995 s. The request of
    # 1.499 s has done 0.5 ms when the stall begins and finishes 0.1 ms after it: 100.6 ms.
    e = SimEngine(SimServer(1, 0.6, stall_every_s=1.4995, stall_ms=100), arrival="constant")
    before, during = e.interval(1000), e.interval(1000)
    assert before.latency.max_ns == pytest.approx(600_000, abs=10)
    assert during.latency.max_ns == pytest.approx(100_600_000, abs=1_000)
    # Every arrival in [1.499, 1.550) waits at least 50 ms (and the backlog delays later ones).
    assert at_least(during.latency, 50e6) >= 51
    assert e.interval(1000).latency.max_ns == pytest.approx(600_000, abs=10)  # gone by 2 s


def test_warmup_makes_early_latencies_higher():
    server = SimServer(4, 2.0, "const", warmup_s=2.0, warmup_factor=3.5)
    e = SimEngine(server, seed=2)
    first = [e.interval(800).latency for _ in range(2)]
    later = run(e, 800, 3, skip=3)
    # Cold, 4 workers at 7 ms serve 571/s < 800/s: a backlog, gone within 0.5 s once warm.
    assert all(h.values_at((50.0,))[0] >= 7_000_000 for h in first)
    assert later.values_at((50.0,))[0] == pytest.approx(2_000_000, rel=0.01)
    assert later.values_at((99.0,))[0] < 5_000_000


def test_a_full_queue_rejects_with_503():
    e = SimEngine(SimServer(1, 2.0, max_queue=5), seed=3)
    snaps = [e.interval(1000) for _ in range(3)]  # ρ = 2: about half are turned away
    for s in snaps:
        assert s.by_error["http_5xx"] > 300
        assert s.completed == s.ok + s.by_error["http_5xx"]
        assert s.errors == s.by_error["http_5xx"]
        assert s.latency.min_ns == pytest.approx(100_000, abs=100)  # answered at once
        assert s.latency.max_ns <= 6 * 2_000_000 + 1_000  # 5 ahead plus its own service
        assert s.messages == [("http_5xx", "HTTP 503")]
    assert snaps[0].to_dict()["by_error"]["http_5xx"] == snaps[0].by_error["http_5xx"]


def test_payload_items_add_service_time():
    e = SimEngine(SimServer(16, 2.0, per_item_ms=1.0), arrival="constant", seed=4,
                  items=np.array([0, 10]), item_weights=np.array([3.0, 1.0]))
    h = run(e, 200, 5)
    slow = at_least(h, 12e6)
    assert h.min_ns == 2_000_000 and h.max_ns == 12_000_000  # nobody waits: 16 workers
    assert at_least(h, 2.1e6) == slow
    assert slow / h.total == pytest.approx(0.25, abs=0.05)


def test_intervals_conserve_requests_and_drain_empties_the_server():
    e = SimEngine(SimServer(2, 3.0, "exp", max_queue=50), seed=9, interval_s=0.5)
    snaps = [e.interval(r) for r in (300, 900, 900, 200, 0, 800)]
    assert sum(s.scheduled for s in snaps) == sum(s.completed for s in snaps) + snaps[-1].inflight
    assert snaps[-1].inflight > 0
    for s in snaps:
        assert s.sent == s.scheduled and s.shed == 0 and s.connections == 2
        assert s.completed == s.latency.total == s.hists["send_lag"].total
        assert s.hists["send_lag"].max_ns == s.hists["schedule_lag"].max_ns == 0
    assert [s.index for s in snaps] == list(range(6))
    assert [s.t_s for s in snaps] == pytest.approx(np.arange(1, 7) * 0.5)
    took = e.drain()
    assert 0 < took < 60
    assert e.last_drain.drain and e.last_drain.completed == snaps[-1].inflight
    assert e.inflight == 0 and e.now_s == pytest.approx(3.0 + took) and e.load_s == 3.0
    after = e.interval(100)
    assert after.t_s == pytest.approx(e.now_s) and after.index == 7


def test_same_seed_same_snapshots():
    def series(seed):
        e = SimEngine(SimServer(3, 2.0, "lognormal", service_cv=1.0), seed=seed)
        return [(s.completed, s.latency.max_ns) for s in (e.interval(1200) for _ in range(3))]

    assert series(1) == series(1) != series(2)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError):
        SimServer(service_dist="gamma")
    with pytest.raises(ConfigError):
        SimServer(stall_every_s=0.1, stall_ms=100)
    with pytest.raises(ConfigError):
        SimEngine(SimServer(), arrival="bursty")


def test_sim_stays_pure():
    code = ("import sys, crestline.search.sim\n"
            "bad = [m for m in ('crestline._core', 'crestline.engine.stage', 'uvloop') "
            "if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
