"""The callable transport: an async function in place of a socket, driven by the same
open-loop scheduler, queue, timeouts and recorders as HTTP."""

import asyncio

import pytest

import crestline
from crestline.errors import ConfigError
from crestline.transport.callable import register, unregister


def test_calls_are_open_loop_with_the_body_as_payload_and_statuses_counted():
    seen = []

    async def model(payload: bytes):
        seen.append(payload)
        k = len(seen)
        await asyncio.sleep(0.005)
        return 503 if k % 10 == 0 else None

    url = register(model, "model-a")
    r = crestline.run(url, rate_rps=400, duration_s=1.5, body=b'{"prompt": "hi"}',
                      interval_s=0.5, connections=32)
    d = r.to_dict()
    assert url == "call://model-a" and set(seen) == {b'{"prompt": "hi"}'}
    assert d["requests"]["scheduled"] == 600 == len(seen)  # one call per slot, on schedule
    assert d["requests"]["completed"] == 600
    assert d["requests"]["by_error"]["http_5xx"] == 60 and d["requests"]["ok"] == 540
    assert d["requests"]["error_messages"]["http_5xx"] == ["call returned status 503"]
    # latency from the intended send time includes the 5 ms the call took
    assert 5.0 <= d["latency_ms"]["p50"] < 100
    unregister("model-a")


def test_a_hung_call_times_out_and_a_raising_call_is_a_read_error():
    calls = {"n": 0}

    async def flaky(payload: bytes):
        calls["n"] += 1
        if calls["n"] % 2:
            await asyncio.sleep(30)  # never answers: the core's timeout cancels it
        raise ValueError("backend said no")

    r = crestline.run(register(flaky), rate_rps=50, duration_s=1.0, timeout_s=0.2,
                      interval_s=0.5, connections=64).to_dict()
    by = r["requests"]["by_error"]
    assert by["timeout"] == 25 and by["read"] == 25 and r["requests"]["ok"] == 0
    assert "ValueError('backend said no')" in r["requests"]["error_messages"]["read"][0]


def test_concurrent_calls_are_bounded_by_connections():
    live = {"now": 0, "most": 0}

    async def slow(payload: bytes):
        live["now"] += 1
        live["most"] = max(live["most"], live["now"])
        await asyncio.sleep(0.05)
        live["now"] -= 1
        return 200

    r = crestline.run(register(slow), rate_rps=400, duration_s=1.0, connections=4,
                      interval_s=0.5).to_dict()
    assert live["most"] == 4  # 400 rps x 50 ms wants 20; four slots queue the rest
    assert r["requests"]["completed"] == r["requests"]["scheduled"]
    assert r["send_lag_ms"]["p99"] > 50  # the wait for a free slot is measured, not hidden


def test_call_targets_are_checked_before_any_load():
    async def f(p):
        return 200

    url = register(f, "checked")
    with pytest.raises(ConfigError, match="this process only"):
        crestline.run(url, rate_rps=10, duration_s=1, workers=2, connections=2)
    with pytest.raises(ConfigError, match="not a registered call target"):
        crestline.run("call://nobody", rate_rps=10, duration_s=1)
    with pytest.raises(ConfigError, match="lowercase"):
        register(f, "Bad Name")


def test_a_session_drives_a_call_target_stage_by_stage():
    from crestline.embed import Session

    async def echo(payload: bytes):
        await asyncio.sleep(0.001)

    async def harness():
        async with await Session.open(register(echo), connections=8, interval_s=0.25) as s:
            return [await s.stage(rate_rps=rate, duration_s=0.5).wait() for rate in (100, 200)]

    slow, fast = asyncio.run(harness())
    assert (slow.completed, fast.completed) == (50, 100) and slow.ok == 50 and fast.ok == 100
