"""LLM workloads end to end: bodies synthesised or read from JSONL into a .cltrace, a plain
`crestline run --body @chat.json` measured as a stream, and a search on a TTFT SLO against
the demo LLM server, whose capacity its own model gives."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from cli_process import CLI, crestline
from servers import Target

from crestline.engine.llm_workload import Lengths, from_jsonl, synthesise
from crestline.errors import ConfigError
from crestline.servers.llm_batch import CostModel
from crestline.trace.format import read_trace

LLM = "crestline.servers.llm"


def test_synthesised_lengths_and_shared_prefixes():
    bodies = synthesise(400, "chat", Lengths.parse("normal:60,10", "--p"),
                        Lengths.parse("uniform:4,12", "--o"), groups=4, prefix_tokens=32,
                        seed=3, model="m")
    prompts = [b["messages"][0]["content"].split() for b in bodies]
    assert abs(np.mean([len(p) for p in prompts]) - 60) < 2
    out = [b["max_tokens"] for b in bodies]
    assert min(out) == 4 and max(out) == 12 and set(out) == set(range(4, 13))
    # request i belongs to group i mod 4: the same 32 words first, other groups differ
    assert prompts[0][:32] == prompts[4][:32] != prompts[1][:32]
    assert all(b["stream"] and b["stream_options"] == {"include_usage": True}
               and b["ignore_eos"] for b in bodies)
    fixed = synthesise(3, "completions", Lengths.parse("fixed:7", "--p"),
                       Lengths.parse("fixed:5", "--o"), model="m", stream=False)
    assert [len(b["prompt"].split()) for b in fixed] == [7] * 3 and "stream" not in fixed[0]
    for bad in ("normal:5", "uniform:9,3", "pareto:2", "fixed:0"):
        with pytest.raises(ConfigError, match="--p"):
            Lengths.parse(bad, "--p")


def test_jsonl_dataset(tmp_path):
    ds = tmp_path / "d.jsonl"
    ds.write_text('{"prompt": "a b c", "max_tokens": 3}\n\n'
                  '{"messages": [{"role": "user", "content": "hi"}]}\n')
    bodies = from_jsonl(str(ds), "chat", Lengths.parse("fixed:9", "--o"), model="m")
    assert bodies[0]["messages"][0]["content"] == "a b c" and bodies[0]["max_tokens"] == 3
    assert bodies[1]["messages"] == [{"role": "user", "content": "hi"}]
    assert bodies[1]["max_tokens"] == 9
    with pytest.raises(ConfigError, match="line 2: no max_tokens"):
        from_jsonl(str(ds), "chat", None, model="m")
    p = subprocess.run([*CLI[:2], "crestline.engine.llm_workload", "jsonl", str(ds), "--api",
                        "completions", "--output-tokens", "fixed:4",
                        "--out", str(tmp_path / "x.cltrace")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and 'line 2: needs a string "prompt"' in p.stderr


@pytest.fixture
def llm():
    made = []
    yield lambda *f: made.append(Target(*f, module=LLM)) or made[-1]
    for s in made:
        s.stop()


def test_run_with_a_stream_body_just_works(llm, tmp_path):
    server = llm()
    body = tmp_path / "chat.json"
    body.write_text(json.dumps({"model": "m", "stream": True, "max_tokens": 6,
                                "ignore_eos": True,
                                "messages": [{"role": "user", "content": "x y"}]}))
    out = tmp_path / "r.json"
    p = crestline("run", server.url + "v1/chat/completions", "--method", "POST", "-H",
                  "Content-Type: application/json", "--body", f"@{body}", "--rate", "10",
                  "--duration", "2s", "--quiet", "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    d = json.loads(out.read_text())
    ok = d["requests"]["ok"]
    # no include_usage in this body: tokens are the content events counted
    assert ok >= 18 and d["output_tokens"]["total"] == 6 * ok
    assert d["stream"]["events_counted"] == ok and d["stream"]["usage_counted"] == 0
    assert set(d["ttft_ms"]) >= {"p50", "p90", "p99", "p999", "max"}


def test_a_synthesised_trace_replays_its_length_mix(llm, tmp_path):
    server = llm()
    trace = tmp_path / "chat.cltrace"
    p = subprocess.run([*CLI[:2], "crestline.engine.llm_workload", "synth", "--n", "100",
                        "--prompt-tokens", "uniform:10,30", "--output-tokens", "uniform:2,9",
                        "--out", str(trace)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "wrote 100 chat requests" in p.stdout, p.stderr
    assert len(read_trace(str(trace)).records) == 100
    out = tmp_path / "r.json"
    p = crestline("run", server.url, "--trace", trace, "--arrival", "poisson", "--rate", "20",
                  "--duration", "2s", "--quiet", "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    d = json.loads(out.read_text())
    per = d["output_tokens"]["per_request"]
    assert 2 <= per["p50"] <= 9 and per["max"] <= 9 and per["max"] > per["p50"] / 2
    assert d["stream"]["usage_counted"] == d["requests"]["ok"] > 20


@pytest.mark.slow
def test_search_on_ttft_finds_the_models_capacity(llm, tmp_path):
    cost = CostModel(max_batch=8, step_ms=5, step_ms_per_seq=0, prefill_ms_per_token=0)
    truth_rps = cost.capacity_rps(4, 10)  # 8 sequences of 10 steps of 5 ms: 160 rps
    server = llm("--max-batch", "8", "--step-ms", "5", "--step-ms-per-seq", "0",
                 "--prefill-ms-per-token", "0")
    body = tmp_path / "chat.json"
    body.write_text(json.dumps({"model": "m", "stream": True, "max_tokens": 10,
                                "ignore_eos": True, "stream_options": {"include_usage": True},
                                "messages": [{"role": "user", "content": "a b c d"}]}))
    out = tmp_path / "s.json"
    p = crestline("search", server.url + "v1/chat/completions", "--method", "POST", "-H",
                  "Content-Type: application/json", "--body", f"@{body}",
                  "--slo", "ttft_p90=150ms", "--arrival", "poisson", "--seed", "1",
                  "--start-rate", "100", "--step-duration", "3s", "--interval", "0.5s",
                  "--warmup", "none", "--max-time", "25s", "--max-rate", "400",
                  "--tolerance", "10%", "--quiet", "--out", out, timeout=180)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    r = json.loads(out.read_text())
    steps = [(s["rate_rps"], s["verdict"], s["why"]) for s in r["steps"]]
    passed = [rate for rate, v, _ in steps if v == "pass"]
    # never a pass above what the server's model can serve; the best pass well inside it
    assert passed and max(passed) < truth_rps, steps
    assert max(passed) > 0.5 * truth_rps, steps
    assert any(v == "fail" and rate >= truth_rps for rate, v, _ in steps) or max(
        rate for rate, _, _ in steps) < truth_rps, steps
    assert all("ttft_p90" in w for rate, v, w in steps if v == "pass"), steps
