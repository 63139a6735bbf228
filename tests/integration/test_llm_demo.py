"""`crestline demo --llm`: the demo LLM server and its chat mix, a run, and the quick capacity
search on TTFT and ITL, which its own cost model bounds."""

from __future__ import annotations

import json
import time

import pytest
from cli_process import crestline

from crestline.engine.llm_workload import DEMO_OUTPUT_TOKENS, DEMO_PROMPT_WORDS
from crestline.servers.llm_batch import DEMO_COST

CAPACITY_RPS = DEMO_COST.capacity_rps(DEMO_PROMPT_WORDS[0], sum(DEMO_OUTPUT_TOKENS) // 2)


def test_demo_llm_run_streams_the_chat_mix(tmp_path):
    out = tmp_path / "r.json"
    p = crestline("demo", "--llm", "--run", "--duration", "2s", "--out", out, "--html", "")
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"its own model serves at most {CAPACITY_RPS:.0f} rps" in p.stderr
    d = json.loads(out.read_text())
    # 20 rps of Poisson arrivals for 2 s, each a streamed chat request of the demo mix
    assert 20 < d["requests"]["scheduled"] < 70 and d["requests"]["errors"] == 0
    assert d["stream"]["streams"] == d["requests"]["ok"]
    per = d["output_tokens"]["per_request"]
    assert DEMO_OUTPUT_TOKENS[0] <= per["p50"] <= DEMO_OUTPUT_TOKENS[1] >= per["max"]
    assert d["ttft_ms"]["p50"] > 0 and d["itl_ms"]["p50"] > 0


@pytest.mark.slow
# ~50 s, and tests/integration/test_llm_workload.py's TTFT search covers the same search path:
# in the long set (`pytest -m long`).
@pytest.mark.long
def test_demo_llm_quick_search_stays_under_the_models_capacity(tmp_path):
    out, html = tmp_path / "s.json", tmp_path / "s.html"
    t0 = time.monotonic()
    p = crestline("demo", "--llm", "--quick", "--out", out, "--html", html, timeout=240)
    elapsed_s = time.monotonic() - t0
    assert p.returncode in (0, 1), p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["slo"] == {"ttft_p90": "100ms", "itl_p99": "60ms"}
    steps = [(s["rate_rps"], s["verdict"]) for s in r["steps"]]
    passed = [rate for rate, v in steps if v == "pass"]
    # never a pass far above what the server's model can serve (short steps: 10% slack);
    # the capacity found well inside it
    assert passed and max(passed) <= 1.1 * CAPACITY_RPS, (steps, CAPACITY_RPS)
    assert r["capacity_rps"] is not None and r["capacity_rps"] > 0.4 * CAPACITY_RPS, steps
    assert all("ttft_ms" in s and "goodput_fraction" in s["stream"] for s in r["steps"])
    assert "capacity" in p.stdout and "ttft p99" in p.stderr  # the step lines
    doc = html.read_text()
    assert 'id="fig-stream-vs-rate"' in doc and "TTFT p99 (ms)" in doc
    assert elapsed_s < 90, elapsed_s  # about 30 s on a 2-core machine
