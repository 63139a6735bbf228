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
