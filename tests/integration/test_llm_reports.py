"""Token-stream figures where results are read: sweep rows and their runlog rebuild, the text
tables, against the demo LLM server whose capacity its own model gives."""

from __future__ import annotations

import json

import pytest
from cli_process import crestline
from servers import Target

from crestline.servers.llm_batch import CostModel

LLM = "crestline.servers.llm"
# 8 sequences at once, 5 ms a step, no prefill cost: 10-token replies at 160 rps at most.
COST = CostModel(max_batch=8, step_ms=5, step_ms_per_seq=0, prefill_ms_per_token=0)
FLAGS = ("--max-batch", "8", "--step-ms", "5", "--step-ms-per-seq", "0",
         "--prefill-ms-per-token", "0")


@pytest.fixture
def llm():
    server = Target(*FLAGS, module=LLM, max_seconds=120)
    yield server
    server.stop()


def chat_body(tmp_path, tokens: int = 10):
    body = tmp_path / "chat.json"
    body.write_text(json.dumps({"model": "m", "stream": True, "max_tokens": tokens,
                                "ignore_eos": True, "stream_options": {"include_usage": True},
                                "messages": [{"role": "user", "content": "a b c d"}]}))
    return body


def test_sweep_rows_carry_stream_figures_and_rebuild_from_the_runlog(llm, tmp_path):
    over = 2 * COST.capacity_rps(4, 10)  # 320 rps: the batch is full, requests queue
    out, runlog = tmp_path / "s.json", tmp_path / "s.runlog"
    p = crestline("sweep", llm.url + "v1/chat/completions", "--method", "POST", "-H",
                  "Content-Type: application/json", "--body", f"@{chat_body(tmp_path)}",
                  "--rates", f"20,{over:g}", "--step-duration", "2s", "--interval", "0.5s",
                  "--warmup", "none", "--slo", "ttft_p99=100ms", "--slo", "goodput=90%",
                  "--seed", "1", "--timeout", "30s", "--out", out, "--runlog", runlog,
                  "--html", tmp_path / "s.html",
                  timeout=120)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    r = json.loads(out.read_text())
    low, high = r["rows"]
    for row in (low, high):
        assert set(row["ttft_ms"]) >= {"p50", "p99", "max"} and row["stream"]["streams"] > 0
        assert row["itl_ms"]["p50"] > 0 and row["tpot_ms"]["p50"] > 0
    # below capacity: 10 tokens per reply at the offered rate, every stream good
    assert low["output_tokens"]["per_s"] == pytest.approx(10 * low["achieved_rps"], rel=0.15)
    assert low["stream"]["goodput_fraction"] > 0.95 and low["slo_met"] is True
    # twice over capacity: the queue shows in TTFT from the intended send, and goodput falls
    assert high["ttft_ms"]["p99"] > 100 > low["ttft_ms"]["p99"], (low, high)
    assert high["stream"]["goodput_fraction"] < low["stream"]["goodput_fraction"]
    assert high["slo_met"] is False
    # the table shows them; a report from the runlog rebuilds the same rows
    assert "ttft p99" in p.stdout and "tok/s" in p.stdout and "goodput" in p.stdout
    p = crestline("report", runlog, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rows"] == r["rows"]
    # the HTML report: the sweep's stream curves (TTFT/ITL and goodput against the rate),
    # tokens/s over time, and the stream columns of the rows
    doc = (tmp_path / "s.html").read_text()
    for needle in ('id="fig-sweep-curve"', 'id="fig-sweep-stream"', 'id="fig-stream-series"',
                   "TTFT p99 (ms)", "goodput (%)", "tokens/s", "SLO ttft_p99 ≤ 100 ms"):
        assert needle in doc, needle
    assert "<script" not in doc


def _html_of(result_path, tmp_path) -> str:
    page = tmp_path / "page.html"
    p = crestline("report", result_path, "--html", page)
    assert p.returncode == 0, p.stderr
    return page.read_text()


def test_a_run_report_shows_its_token_streams(llm, tmp_path):
    out = tmp_path / "r.json"
    p = crestline("run", llm.url + "v1/chat/completions", "--method", "POST", "-H",
                  "Content-Type: application/json", "--body", f"@{chat_body(tmp_path)}",
                  "--rate", "20", "--duration", "2s", "--interval", "0.5s",
                  "--slo", "ttft_p99=200ms", "--slo", "itl_p99=50ms", "--quiet", "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    d = json.loads(out.read_text())
    dist = d["stream_distribution_ms"]
    assert dist["ttft"][-1][1] == pytest.approx(d["ttft_ms"]["max"], rel=0.01)
    assert [q for q, _ in dist["itl"]][:4] == [0.0, 10.0, 25.0, 50.0]
    doc = _html_of(out, tmp_path)
    # the stream section: every time's row and the token counts, with this run's own figures
    assert "<h3>Token streams</h3>" in doc
    for label in ("time to first token (TTFT)", "TTFT from the actual send", "inter-token (ITL)",
                  "time per output token (TPOT)", "end to end", "counted by usage"):
        assert label in doc, label
    assert f"<td class=\"num\">{d['output_tokens']['total']:,}</td>" in doc
    for fig in ("stream-series", "stream-distribution", "latency-series", "distribution"):
        assert f'id="fig-{fig}"' in doc, fig
    assert "SLO ttft_p99 ≤ 200 ms" in doc and "SLO itl_p99 ≤ 50 ms" in doc


def test_per_class_ttft_and_tpot_from_a_trace_of_two_prompt_lengths(tmp_path):
    # prefill costs 0.2 ms a prompt token: a 400-word prompt's first token comes ~80 ms after
    # a 10-word one's, and the per-class TTFT (by model and by body size) has to show it
    from crestline.engine.llm_workload import Lengths, synthesise, write_workload

    bodies = []
    for model, words in (("short", 10), ("long", 400)):
        bodies += synthesise(20, "chat", Lengths("fixed", words), Lengths("fixed", 6),
                             model=model, seed=len(bodies))
    trace = tmp_path / "mix.cltrace"
    write_workload(str(trace), bodies, "chat", "test")
    server = Target("--prefill-ms-per-token", "0.2", "--step-ms", "4", module=LLM,
                    max_seconds=60)
    try:
        out = tmp_path / "r.json"
        p = crestline("run", server.url, "--trace", trace, "--arrival", "constant", "--rate",
                      "5", "--duration", "3s", "--seed", "2", "--out", out)
    finally:
        server.stop()
    assert p.returncode == 0, p.stderr[-2000:]
    d = json.loads(out.read_text())
    short, long = d["by_class"]["short"], d["by_class"]["long"]
    assert short["completed"] + long["completed"] == d["requests"]["ok"] >= 14
    assert long["ttft_ms"]["p50"] > short["ttft_ms"]["p50"] + 40, (short, long)
    assert short["tpot_ms"]["p50"] > 0 and long["tpot_ms"]["p50"] > 0
    sizes = d["by_size"]
    assert set(sizes) == {"<=1KiB", "<=4KiB"}, sizes
    assert sizes["<=4KiB"]["ttft_ms"]["p50"] > sizes["<=1KiB"]["ttft_ms"]["p50"] + 40
    # the run's summary table and its HTML report show the per-class TTFT
    assert "ttft p50" in p.stdout and "short" in p.stdout
    doc = _html_of(out, tmp_path)
    assert "TTFT p50 (ms)" in doc and "TPOT p99 (ms)" in doc and "<td>long</td>" in doc
