"""Latency from the intended send time: coordinated omission is not hidden."""

import pytest

import crestline


def test_a_stall_shows_in_latency_not_in_service_time(target):
    # One 300 ms stall, 4 connections, 1000 rps: open loop keeps scheduling during the stall,
    # so ~300 requests wait and their latency (from the intended time) shows it, while each
    # request's own service time after it was written stays small.
    t = target("--stall-at", "1.5", "--stall-ms", "300")
    d = crestline.run(t.url, rate_rps=1000, duration_s=3.5, connections=4).to_dict()
    assert d["requests"]["errors"] == 0, d["requests"]
    lat, svc = d["latency_ms"], d["service_ms"]
    assert lat["max"] > 250, lat
    assert lat["p99"] > 150, lat          # ~9% of requests were delayed by the stall
    assert svc["p99"] < 20, svc           # only the 4 requests on the wire saw it
    assert svc["max"] > 250               # ... and they did
    assert d["send_lag_ms"]["p99"] > 100  # the rest waited for a connection
    assert d["client_ok"], d["client_problems"]
    assert any("waited for a free connection" in w for w in d["warnings"])


def test_fixed_delay_server_latency_p50_within_1ms(target):
    t = target("--delay-ms", "5")
    d = crestline.run(t.url, rate_rps=500, duration_s=3, connections=16).to_dict()
    assert d["requests"]["ok"] == 1500
    assert d["latency_ms"]["p50"] == pytest.approx(5.0, abs=1.0)
    assert d["service_ms"]["p50"] == pytest.approx(5.0, abs=1.0)
    assert d["latency_ms"]["p50"] >= 5.0  # never early: the server holds each response 5 ms
