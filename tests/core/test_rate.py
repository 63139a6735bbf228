"""Open-loop rate accuracy against a fast loopback server, and worker merging."""

import numpy as np
import pytest
from timing import assert_on_schedule, beside_host, timed

import crestline


def _conserved(d):
    """Every scheduled slot ends as a response, a counted failure, or shed."""
    r = d["requests"]
    failed_unanswered = sum(v for k, v in r["by_error"].items() if not k.startswith("http_"))
    return r["scheduled"] == r["completed"] + failed_unanswered + r["shed"]


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_achieved_rate_within_one_percent_of_offered(target, arrival):
    t = target()
    rate, dur = 2000.0, 4.0

    @beside_host
    def measure():
        result = crestline.run(t.url, rate_rps=rate, duration_s=dur, arrival=arrival, seed=3,
                               connections=16)
        return result, result.to_dict()

    def exact(run):
        (result, d), _ = run
        assert d["requests"]["errors"] == 0, d["requests"]
        if arrival == "constant":
            assert d["requests"]["scheduled"] == rate * dur
            assert d["offered_rps"] == pytest.approx(rate, rel=0.005)
        else:  # the realised Poisson count is random: within 5 sigma of rate * duration
            assert abs(d["requests"]["scheduled"] - rate * dur) < 5 * np.sqrt(rate * dur)
        assert _conserved(d)
        load = [i for i in d["intervals"] if not i["drain"]]
        assert len(load) == 4 and d["intervals"][-1]["drain"]
        assert d["intervals"][-1]["achieved_rps"] is None  # a few ms of drain is not a rate
        assert sum(i["scheduled"] for i in d["intervals"]) == d["requests"]["scheduled"]
        # histograms hold exactly the completed responses
        assert result.latency.total == d["requests"]["completed"]

    def timing(run):
        (_, d), host_p99_ms = run
        assert d["achieved_rps"] == pytest.approx(d["offered_rps"], rel=0.01)
        assert_on_schedule(d, host_p99_ms)
        assert d["send_lag_ms"]["p50"] < 1.0

    timed(measure, exact, timing)


def test_two_workers_share_the_schedule_and_merge_exactly(target):
    t = target()

    @beside_host
    def measure():
        result = crestline.run(t.url, rate_rps=1500, duration_s=3, workers=2, connections=8)
        return result, result.to_dict()

    def exact(run):
        (result, d), _ = run
        assert d["requests"]["scheduled"] == 4500
        assert d["requests"]["ok"] == 4500, d["requests"]
        assert result.latency.total == 4500
        assert sum(i["completed"] for i in d["intervals"]) == 4500
        assert [i["drain"] for i in d["intervals"]] == [False, False, False, True]

    def timing(run):
        (_, d), host_p99_ms = run
        assert d["achieved_rps"] == pytest.approx(1500, rel=0.01)
        assert_on_schedule(d, host_p99_ms)

    timed(measure, exact, timing)


def test_batch_window_trades_send_lag_for_wakeups(target):
    t = target()

    def measure():
        return crestline.run(t.url, rate_rps=2000, duration_s=2, batch_window_s=0.002,
                             connections=16).to_dict()

    def exact(d):
        assert d["requests"]["ok"] == 4000

    def timing(d):
        # slots wait for the next wake: up to 2 ms late, about 1 ms on average, never early
        assert 0.5 < d["send_lag_ms"]["p50"] < 2.5
        assert d["send_lag_ms"]["p99"] < 20.0

    timed(measure, exact, timing)
