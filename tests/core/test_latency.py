"""Latency from the intended send time: coordinated omission is not hidden."""

import pytest
from timing import assert_on_schedule, beside_host, timed

import crestline


def test_a_stall_shows_in_latency_not_in_service_time(target):
    # One 300 ms stall, 4 connections, 1000 rps: open loop keeps scheduling during the stall,
    # so ~300 requests wait and their latency (from the intended time) shows it, while each
    # request's own service time after it was written stays small.
    @beside_host
    def measure():  # a fresh target each time: it stalls once, 1.5 s after its start
        t = target("--stall-at", "1.5", "--stall-ms", "300")
        return crestline.run(t.url, rate_rps=1000, duration_s=3.5, connections=4).to_dict()

    def exact(run):
        d, _ = run
        assert d["requests"]["errors"] == 0, d["requests"]
        assert any("waited for a free connection" in w for w in d["warnings"])

    def timing(run):
        d, host_p99_ms = run
        lat, svc = d["latency_ms"], d["service_ms"]
        assert lat["max"] > 250, lat
        assert lat["p99"] > 150, lat          # ~9% of requests were delayed by the stall
        assert svc["p99"] < 20, svc           # only the 4 requests on the wire saw it
        assert svc["max"] > 250               # ... and they did
        assert d["send_lag_ms"]["p99"] > 100  # the rest waited for a connection
        assert_on_schedule(d, host_p99_ms)    # ... while the scheduler itself kept time

    timed(measure, exact, timing)


def test_fixed_delay_server_latency_p50_within_1ms(target):
    t = target("--delay-ms", "5")

    def measure():
        return crestline.run(t.url, rate_rps=500, duration_s=3, connections=16)

    def exact(r):
        assert r.to_dict()["requests"]["ok"] == 1500
        # never early: the server holds each response 5 ms after it reads the request
        assert r.hists["service"].min_ns >= 5_000_000 and r.latency.min_ns >= 5_000_000

    def timing(r):
        d = r.to_dict()
        assert d["latency_ms"]["p50"] == pytest.approx(5.0, abs=1.0)
        assert d["service_ms"]["p50"] == pytest.approx(5.0, abs=1.0)

    timed(measure, exact, timing)
