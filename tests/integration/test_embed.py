"""The embedding API as a harness uses it: a Session on a real loopback target, stages at
chosen rates read as they go, a search stepped by hand, plain results."""

import asyncio
import json

import pytest

from crestline.embed import Interval, SearchResult, Session, StageResult, StepResult
from crestline.errors import ConfigError, CrestlineError


def test_stages_at_chosen_rates_stream_intervals_as_they_close(target):
    t = target("--delay-ms", "2")

    async def harness():
        seen = []
        async with await Session.open(t.url, connections=8, interval_s=0.25, seed=1) as s:
            assert s.workers == 1
            for rate in (200, 400):
                stage = s.stage(rate_rps=rate, duration_s=1.0)
                async for iv in stage:
                    assert isinstance(iv, Interval)
                    seen.append((rate, iv))
                res = stage.result
                assert isinstance(res, StageResult) and res.rate_rps == rate
                assert res.scheduled == rate and res.completed == rate and res.ok == rate
                assert abs(res.achieved_rps - rate) / rate < 0.05
                assert 2.0 <= res.latency_ms.p50 < 50 and res.latency_ms.max >= res.latency_ms.p99
                json.dumps(res.to_dict())  # plain data, all the way down
            # stage indices run on across stages; each stage ends with its drain
            assert [iv.index for _, iv in seen] == list(range(len(seen)))
            assert [iv.drain for _, iv in seen].count(True) == 2
            loads = [iv for _, iv in seen if not iv.drain]
            assert all(iv.snapshot.latency.total == iv.completed for iv in loads)
            # end() stops a stage from the loop that reads it
            stage = s.stage(rate_rps=100, duration_s=30.0)
            async for iv in stage:
                if iv.index >= len(seen) + 1:
                    stage.end()
            assert stage.result.interrupted and stage.result.duration_s < 5
            assert stage.result.scheduled < 100 * 5
        return seen

    seen = asyncio.run(harness())
    assert len(seen) >= 10


def test_a_search_stepped_by_hand_ends_with_a_capacity(target):
    t = target("--servers", "2", "--service-ms", "5", "--service-dist", "const",
               max_seconds=300)

    async def harness():
        async with await Session.open(t.url, connections=16, interval_s=0.5, seed=2,
                                      arrival="poisson") as s:
            # p90 <= 40 ms tolerates 4 ms of client lag (a noisy host's wake-ups stay inside)
            search = s.search("p90=40ms", start_rate_rps=100, max_rate_rps=380, step_s=2,
                              warmup="none", tolerance=0.2, max_time_s=15,
                              max_step_s=3)
            steps = []
            while (step := await search.step()) is not None:
                assert isinstance(step, StepResult) and step.index == len(steps)
                assert step.verdict in ("pass", "fail", "unsure", "invalid")
                steps.append(step)
                if not search.done:  # mid-search the pool is the search's
                    with pytest.raises(CrestlineError, match="one at a time"):
                        s.stage(rate_rps=10, duration_s=1.0).__aiter__()
            assert search.done and await search.step() is None
            result = search.result
            # the session stays usable after the search: once what it left in flight is done,
            # a stage counts only its own requests
            await s.wait_idle()
            after = await s.stage(rate_rps=50, duration_s=0.5).wait()
            return steps, result, after

    steps, result, after = asyncio.run(harness())
    assert isinstance(result, SearchResult) and len(result.steps) == len(steps) >= 2
    assert [s.rate_rps for s in result.steps] == [s.rate_rps for s in steps]
    # what the whole search would say: converged with a capacity under the server's 400 rps,
    # or a budget spent (a shared machine) with the highest confirmed rate, if any
    assert result.reason and (result.capacity_rps is None or result.capacity_rps < 400)
    assert result.converged <= (result.capacity_rps is not None)
    assert result.to_dict()["kind"] == "search"
    assert json.loads(json.dumps(result.to_dict()))["capacity_rps"] == result.capacity_rps
    assert after.completed == after.scheduled > 0 and after.errors == 0


def test_bad_options_are_config_errors_before_any_load(listener):
    url = f"http://127.0.0.1:{listener.port}/"

    async def harness():
        with pytest.raises(ConfigError, match="per stage"):
            await Session.open(url, rate_rps=10)
        with pytest.raises(ConfigError, match="--connections"):
            await Session.open(url, connections=0)
        async with await Session.open(url) as s:
            with pytest.raises(ConfigError, match="rate_rps"):
                s.stage(rate_rps=-1, duration_s=1)
            with pytest.raises(ConfigError, match="--slo|slo"):
                s.search([])

    asyncio.run(harness())
    assert listener.accepted() == 1  # the preflight connection only
