"""Chat traffic through `crestline record`: streamed responses pass through token by token,
the records keep the server's usage, the .cltrace replays the chat requests as streams, and
length distributions fit to it."""

from __future__ import annotations

import http.client
import json
import subprocess
import time

import numpy as np
import pytest
from cli_process import CLI, crestline
from servers import Target
from test_record import start_record

from crestline.engine.llm_workload import Lengths, lengths_of
from crestline.errors import ConfigError
from crestline.trace.format import read_trace

LLM = "crestline.servers.llm"


@pytest.fixture
def llm():
    # 20 ms a decode step: a 10-token stream takes ~200 ms from first token to last
    server = Target("--step-ms", "20", "--step-ms-per-seq", "0", module=LLM, max_seconds=120)
    yield server
    server.stop()


def chat(words: int, tokens: int, stream: bool = True) -> dict:
    body = {"model": "m", "max_tokens": tokens, "ignore_eos": True,
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": " ".join(["word"] * words)}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def stream_through(addr: str, body: dict) -> tuple[float, float, list[str]]:
    """(seconds to the first token event, seconds to the end, the data lines) of one POST."""
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        t0 = time.monotonic()
        c.request("POST", "/v1/chat/completions", json.dumps(body),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
        first, lines = None, []
        while line := r.readline():
            if line.startswith(b"data: "):
                lines.append(line[6:].strip().decode())
                if first is None and '"content":"' in lines[-1] and '"content":""' not in \
                        lines[-1]:
                    first = time.monotonic() - t0
        return first, time.monotonic() - t0, lines
    finally:
        c.close()


def test_streams_pass_through_and_the_trace_replays_and_fits(llm, tmp_path):
    out = tmp_path / "chat.cltrace"
    proc, addr = start_record(llm.url, out, "--max-requests", "5")
    try:
        shapes = [(12, 10), (30, 6), (5, 14), (40, 8)]
        for words, tokens in shapes:
            first, end, lines = stream_through(addr, chat(words, tokens))
            # tokens reach the client as the server sends them, not when the stream ends
            assert first is not None and end - first > 0.5 * (tokens - 1) * 0.020, (first, end)
            assert lines[-1] == "[DONE]" and f'"completion_tokens":{tokens}' in lines[-2]
        # one plain JSON answer too: its usage is recorded, it is no stream
        c = http.client.HTTPConnection(*addr.rsplit(":", 1), timeout=30)
        c.request("POST", "/v1/chat/completions", json.dumps(chat(7, 3, stream=False)),
                  {"Content-Type": "application/json"})
        assert c.getresponse().status == 200
        c.close()
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    recs = read_trace(out).records
    assert [r.path for r in recs] == ["/v1/chat/completions"] * 5
    for r, (words, tokens) in zip(recs, shapes + [(7, 3)], strict=True):
        body = json.loads(r.body)
        assert body["max_tokens"] == tokens
        # the demo server counts a token per word of every message: "be brief" is 2
        assert r.extras["prompt_tokens"] == words + 2 and r.extras["completion_tokens"] == tokens
        assert r.extras["status"] == 200 and r.extras.get("stream") is (
            True if body.get("stream") else None)
    # the recorded chat requests replay as streams, each its recorded length
    res = tmp_path / "r.json"
    p = crestline("run", llm.url, "--trace", out, "--arrival", "poisson", "--rate", "20",
                  "--duration", "1.5s", "--seed", "3", "--quiet", "--out", res)
    assert p.returncode == 0, p.stderr[-2000:]
    d = json.loads(res.read_text())
    assert d["stream"]["streams"] > 10 and d["stream"]["usage_counted"] == d["stream"]["streams"]
    assert d["output_tokens"]["per_request"]["max"] == 14
    assert {3, 6, 8, 10, 14} >= {int(v) for v in (d["output_tokens"]["per_request"]["p50"],)}
    # lengths fitted to the recording: the empirical distribution of its usage
    assert sorted(lengths_of(str(out), "prompt")) == [7, 9, 14, 32, 42]
    assert sorted(lengths_of(str(out), "output")) == [3, 6, 8, 10, 14]
    fitted = Lengths.parse(f"trace:{out}", "--output-tokens")
    drawn = fitted.draw(np.random.default_rng(0), 2000)
    assert set(drawn.tolist()) == {3, 6, 8, 10, 14}
    assert abs(np.mean(drawn) - np.mean([3, 6, 8, 10, 14])) < 0.5
    synth = tmp_path / "fit.cltrace"
    p = subprocess.run([*CLI[:2], "crestline.engine.llm_workload", "synth", "--n", "50",
                        "--prompt-tokens", f"trace:{out}", "--output-tokens", f"trace:{out}",
                        "--out", str(synth)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    bodies = [json.loads(r.body) for r in read_trace(synth).records]
    assert {len(b["messages"][0]["content"].split()) for b in bodies} <= {7, 9, 14, 32, 42}
    assert {b["max_tokens"] for b in bodies} <= {3, 6, 8, 10, 14}


def test_fitting_to_a_jsonl_and_bad_files(tmp_path):
    ds = tmp_path / "d.jsonl"
    ds.write_text('{"prompt": "a b c", "max_tokens": 4}\n'
                  '{"messages": [{"role": "user", "content": "x y"}], "output_tokens": 9}\n'
                  '{"prompt": "p", "prompt_tokens": 120, "max_tokens": 2}\n')
    assert lengths_of(str(ds), "prompt") == [3, 2, 120]
    assert lengths_of(str(ds), "output") == [4, 9, 2]
    with pytest.raises(ConfigError, match="--prompt-tokens trace:.*nope.jsonl"):
        Lengths.parse(f"trace:{tmp_path / 'nope.jsonl'}", "--prompt-tokens")
    empty = tmp_path / "e.jsonl"
    empty.write_text('{"other": 1}\n')
    with pytest.raises(ConfigError, match="no output lengths"):
        Lengths.parse(f"trace:{empty}", "--output-tokens")
