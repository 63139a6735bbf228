"""The Python API, as another harness would embed it."""

import asyncio

import pytest

import crestline
from crestline.measure.result import IntervalSnapshot


def test_run_delivers_interval_snapshots_as_it_goes(target):
    t = target()
    seen = []
    result = crestline.run(t.url, rate_rps=400, duration_s=3, interval_s=0.5,
                           on_interval=seen.append)
    assert all(isinstance(s, IntervalSnapshot) for s in seen)
    assert [s.drain for s in seen] == [False] * 6 + [True]
    assert [round(s.t_s, 1) for s in seen[:6]] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert sum(s.scheduled for s in seen) == 1200
    assert result.intervals == seen
    assert result.to_dict()["requests"]["ok"] == 1200


def test_run_async_in_a_running_loop_and_stop_early(target):
    t = target()

    async def harness():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.3, stop.set)
        return await crestline.run_async(t.url, rate_rps=300, duration_s=30, stop=stop)

    result = asyncio.run(harness())  # the default asyncio loop works too, just slower
    d = result.to_dict()
    assert d["interrupted"] is True
    assert 1.0 < d["duration_s"] < 3.0
    assert d["requests"]["ok"] >= 300


def test_config_errors_raise_before_load(closed_port):
    with pytest.raises(crestline.ConfigError, match="cannot connect"):
        crestline.run(f"http://127.0.0.1:{closed_port}/", rate_rps=10, duration_s=1)
    with pytest.raises(crestline.ConfigError, match="rate"):
        crestline.run("http://127.0.0.1:1/", rate_rps=-1, duration_s=1)


def test_search_api_takes_the_cli_options_and_names_its_workers(target):
    # The blocking search, as a harness calls it: interval_s shapes both the spec's interval
    # grid and the policy's judgement (it used to raise TypeError).
    from crestline.capacity import search

    t = target("--servers", "4", "--service-ms", "2", "--service-dist", "const")
    steps = []
    # p99 <= 50 ms tolerates 5 ms of client lag: two workers on a noisy 2-core host stay inside
    r = search(t.url, ["p99=50ms"], interval_s=0.5, start_rate_rps=200, max_rate_rps=400,
               step_s="2s", warmup="none", arrival="poisson", seed=3, workers=2,
               max_time_s=40, on_step=lambda d, policy: steps.append(d))
    assert r["workers"] == 2 and r["spec"]["interval_s"] == 0.5
    assert r["config"]["interval_s"] == 0.5
    assert {iv["dur_s"] for iv in r["intervals"] if not iv["drain"]} <= {0.5}
    assert steps and [s["rate_rps"] for s in steps] == [s["rate_rps"] for s in r["steps"]]
    # 400 rps is a quarter of this server's capacity: the ceiling passes.
    assert r["capacity_rps"] == 400 and "rate ceiling" in r["reason"]
    with pytest.raises(crestline.ConfigError, match="rates and durations"):
        search(t.url, ["p99=10ms"], rate_rps=100)
