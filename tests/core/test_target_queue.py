"""The target's FIFO queue mode (--servers): an M/D/c server, against the real engine."""

from timing import timed

import crestline


def test_two_workers_queue_up_near_their_capacity(target):
    # M/D/2 with 5 ms service: capacity 400 rps. At 100 rps (ρ = 0.25) most requests find a free
    # worker, so p50 is the service time; at 380 rps (ρ = 0.95) waits pile up. The twin in
    # crestline.search.sim gives p99 7-11 ms at 100 rps and 23-90 ms at 380 rps over 2 s (20 seeds).
    t = target("--servers", "2", "--service-ms", "5")

    def measure():
        return [crestline.run(t.url, rate_rps=rate, duration_s=2, connections=32,
                              arrival="poisson", seed=1).to_dict() for rate in (100, 380)]

    def exact(pair):
        for d in pair:
            assert d["requests"]["errors"] == 0, d["requests"]

    def timing(pair):
        low, high = pair
        assert 5.0 <= low["latency_ms"]["p50"] < 6.0, low["latency_ms"]
        assert low["latency_ms"]["p99"] < 14.0, low["latency_ms"]
        assert high["latency_ms"]["p99"] > 15.0, high["latency_ms"]
        assert high["latency_ms"]["p99"] > 1.5 * low["latency_ms"]["p99"]

    timed(measure, exact, timing)


def test_warmup_slows_the_first_seconds(target):
    # One worker, 2 ms, x4 for the target's first 2 s: at a constant 100 rps (ρ = 0.2 warm,
    # 0.8 cold, no queue) the first second is all cold, the fourth all warm.
    def measure():  # a fresh target each time: its warm-up runs once, from its start
        t = target("--servers", "1", "--service-ms", "2", "--warmup-s", "2",
                   "--warmup-factor", "4")
        return crestline.run(t.url, rate_rps=100, duration_s=4, connections=8).to_dict()

    def exact(d):
        assert d["requests"]["errors"] == 0, d["requests"]

    def timing(d):
        first, last = d["intervals"][0], d["intervals"][3]
        assert first["latency_ms"]["p50"] >= 8.0, first
        assert 2.0 <= last["latency_ms"]["p50"] < 3.0, last

    timed(measure, exact, timing)
