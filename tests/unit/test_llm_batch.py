"""The demo LLM server's batching engine in virtual time: its capacity formula is its truth,
the batch and KV limits hold, and the prefix cache saves prefill."""

from __future__ import annotations

import pytest

from crestline.servers.llm_batch import BatchScheduler, CostModel, Sequence


def simulate(cost: CostModel, rate_rps: float, n: int, prompt: int, output: int,
             prefix_cache: bool = False, blocks=()):
    """Constant arrivals through the engine in virtual time; returns per request (arrival,
    first token, end) in ms, and the largest batch and KV seen."""
    eng = BatchScheduler(cost, prefix_cache)
    arrivals = [i * 1e3 / rate_rps for i in range(n)]
    seqs = [Sequence(prompt, output, blocks) for _ in range(n)]
    times = {id(s): [a, None, None] for s, a in zip(seqs, arrivals, strict=True)}
    t, k, max_batch, max_kv = 0.0, 0, 0, 0
    while k < n or eng.busy:
        if not eng.busy:
            t = max(t, arrivals[k])
        while k < n and arrivals[k] <= t:
            eng.add(seqs[k])
            k += 1
        _, step_ms = eng.plan()
        max_batch, max_kv = max(max_batch, len(eng.running)), max(max_kv, eng.kv_used)
        t += step_ms
        stepped, ended = eng.finish()
        for s in stepped:
            if s.emitted == 1:
                times[id(s)][1] = t
        for s in ended:
            times[id(s)][2] = t
    return [times[id(s)] for s in seqs], max_batch, max_kv


def test_capacity_formula_is_the_saturation_point():
    cost = CostModel(max_batch=16, step_ms=8, step_ms_per_seq=0.5, prefill_ms_per_token=0.02)
    cap = cost.capacity_rps(100, 32)
    assert cap == pytest.approx(1e3 / (32 * (8 / 16 + 0.5) + 100 * 0.02))
    n = 2000
    below, _, _ = simulate(cost, 0.9 * cap, n, 100, 32)
    above, _, _ = simulate(cost, 1.1 * cap, n, 100, 32)
    ttft = lambda rows, i: rows[i][1] - rows[i][0]  # noqa: E731
    # below capacity TTFT stays level; above it the queue (and TTFT) keeps growing
    assert ttft(below, n - 1) < 3 * ttft(below, n // 2) + 50
    assert ttft(above, n - 1) > ttft(above, n // 2) + 1000


def test_batch_and_kv_limits_hold_and_queue_the_rest():
    cost = CostModel(max_batch=8, kv_tokens=1000, step_ms=5, step_ms_per_seq=0.1)
    rows, max_batch, max_kv = simulate(cost, 10_000, 40, 100, 100)
    assert max_kv <= 1000 and max_batch == 5  # KV fits 5 sequences of 200 tokens
    rows, max_batch, _ = simulate(CostModel(max_batch=8), 10_000, 40, 100, 100)
    assert max_batch == 8
    # every request got all its tokens, the first one at the end of its first step
    assert all(r[0] < r[1] < r[2] for r in rows)


def test_decode_step_grows_with_the_batch():
    cost = CostModel(step_ms=8, step_ms_per_seq=0.5, prefill_ms_per_token=0)
    one, _, _ = simulate(cost, 1, 3, 10, 20)
    many, _, _ = simulate(cost, 10_000, 32, 10, 20)
    itl_one = (one[0][2] - one[0][1]) / 19
    itl_many = (many[-1][2] - many[-1][1]) / 19
    assert itl_one == pytest.approx(8.5) and itl_many == pytest.approx(8 + 0.5 * 32, rel=0.01)


def test_prefix_cache_saves_the_shared_blocks():
    cost = CostModel(step_ms=1, step_ms_per_seq=0, prefill_ms_per_token=1, block_tokens=16)
    blocks = tuple(range(4))  # a 64-token shared prefix of a 100-token prompt
    eng = BatchScheduler(cost, prefix_cache=True)
    eng.add(Sequence(100, 1, blocks))
    _, first_ms = eng.plan()
    eng.finish()
    eng.add(Sequence(100, 1, blocks))
    joining, second_ms = eng.plan()
    assert first_ms == 1 + 100 and joining[0].cached_tokens == 64 and second_ms == 1 + 36


def test_a_cancelled_sequence_frees_its_slot():
    eng = BatchScheduler(CostModel(max_batch=1))
    a, b = Sequence(10, 100), Sequence(10, 100)
    eng.add(a)
    eng.add(b)
    eng.plan()
    a.cancelled = True
    eng.finish()
    joining, _ = eng.plan()
    assert joining == [b] and eng.kv_used == 110
