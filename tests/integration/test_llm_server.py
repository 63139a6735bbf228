"""The demo LLM server (crestline.servers.llm) on loopback: OpenAI-shaped streams and bodies,
load that slows tokens down, and the SSE scanner on the server's real bytes split anywhere."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time

import pytest
from crestline._sse import SseScanner
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import Target

MODULE = "crestline.servers.llm"


@pytest.fixture(scope="module")
def llm():
    server = Target("--eos-mean-tokens", "8", module=MODULE, max_seconds=120)
    yield server
    server.stop()


def post(server, path: str, body: dict) -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def chat(n: int, **extra) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "one two three four"}],
            "max_tokens": n, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}, **extra}


def events(body: bytes) -> list[dict | str]:
    out = []
    for block in body.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_a_chat_stream_is_shaped_like_vllm(llm):
    status, headers, body = post(llm, "/v1/chat/completions", chat(7))
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    ev = events(body)
    assert ev[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    tokens = [e["choices"][0]["delta"]["content"] for e in ev[1:8]]
    assert len(tokens) == 7 and all(t.strip() for t in tokens)
    assert ev[8]["choices"][0]["finish_reason"] == "length"
    assert ev[9]["usage"] == {"prompt_tokens": 4, "completion_tokens": 7, "total_tokens": 11}
    assert ev[10] == "[DONE]" and len(ev) == 11


def test_non_streaming_completions_and_chat(llm):
    status, _, body = post(llm, "/v1/completions", {"prompt": "a b c", "max_tokens": 5,
                                                     "ignore_eos": True})
    doc = json.loads(body)
    assert status == 200 and doc["usage"]["completion_tokens"] == 5
    assert len(doc["choices"][0]["text"].split()) == 5
    status, _, body = post(llm, "/v1/chat/completions", chat(3, stream=False))
    doc = json.loads(body)
    assert doc["choices"][0]["message"]["role"] == "assistant"
    assert len(doc["choices"][0]["message"]["content"].split()) == 3
    # without ignore_eos the server stops by itself, never past max_tokens
    lengths = {json.loads(post(llm, "/v1/completions", {"prompt": "x", "max_tokens": 200})[2])
               ["usage"]["completion_tokens"] for _ in range(20)}
    assert len(lengths) > 3 and max(lengths) <= 200


def test_bad_requests_are_refused_with_a_reason(llm):
    for body, why in [({"prompt": "a", "max_tokens": 0}, "max_tokens"),
                      ({"messages": []}, "messages"), ({"prompt": 5}, "prompt"),
                      ({"prompt": "a " * 70000}, "context")]:
        status, _, out = post(llm, "/v1/chat/completions" if "messages" in body
                              else "/v1/completions", body)
        assert status == 400 and why in json.loads(out)["error"]["message"]
    assert post(llm, "/v2/infer", {})[0] == 404
    p = subprocess.run([sys.executable, "-m", MODULE, "--max-batch", "0"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2 and "--max-batch must be >= 1" in p.stderr


def _captured(llm) -> bytes:
    if not hasattr(_captured, "body"):
        _captured.body = post(llm, "/v1/chat/completions", chat(25))[2]
    return _captured.body


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=60))
def test_the_scanner_reads_the_servers_bytes_split_anywhere(llm, cuts):
    body = _captured(llm)
    s = SseScanner(keep_kinds=True)
    s.begin()
    edges = [0, *sorted({c % (len(body) + 1) for c in cuts}), len(body)]
    for k, (a, b) in enumerate(zip(edges, edges[1:], strict=False)):
        s.scan(body[a:b], 1000 + k)
    s.end(10**9)
    assert s.event_kinds == ["other"] + ["content"] * 25 + ["other", "other", "done"]
    assert s.usage_completion_tokens == 25 and s.usage_prompt_tokens == 4


def test_multi_token_chunks_and_reasoning_count_apart():
    server = Target("--tokens-per-chunk", "3", "--reasoning-tokens", "4", module=MODULE)
    try:
        body = post(server, "/v1/chat/completions", chat(10))[2]
    finally:
        server.stop()
    s = SseScanner()
    s.begin()
    s.scan(body)
    s.end()
    # 10 tokens in chunks of 3: 4 chunks; the first 4 tokens (chunks 1-2) are reasoning
    assert (s.reasoning_events, s.content_events) == (2, 2)
    assert s.usage_completion_tokens == 10 and s.output_tokens == 10


def test_tokens_slow_down_as_the_batch_grows():
    server = Target("--step-ms", "4", "--step-ms-per-seq", "1", "--prefill-ms-per-token", "0",
                    module=MODULE)
    try:
        def one() -> float:
            t0 = time.monotonic()
            post(server, "/v1/chat/completions", chat(20))
            return time.monotonic() - t0

        alone = min(one() for _ in range(3))
        times: list[float] = []
        threads = [threading.Thread(target=lambda: times.append(one())) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        server.stop()
    # alone: 20 steps of 4 + 1 ms; with ~24 running, 20 steps of ~28 ms
    assert 0.09 < alone < 0.3, alone
    assert sorted(times)[len(times) // 2] > 3 * alone, (alone, times)
