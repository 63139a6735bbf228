"""crestline vs NVIDIA AIPerf (PyPI `aiperf`) on the same OpenAI-compatible streaming server, side
by side in one run, at the same request rates.

The server is crestline's demo LLM server (crestline.servers.llm: continuous batching in a
timing model, no weights), or with --llama PYTHON a real one: llama.cpp's server
(llama-cpp-python) over a tiny random-weight model that bench/tiny_gguf.py writes, since no
weights can be downloaded here. That model never emits its end token, so every stream runs
to max_tokens; the server reports no usage in streams, so both clients count content chunks
(one token each). AIPerf needs a tokenizer and cannot download one here, so the
bench builds a word-level one (one token per word, the demo server's own count) with the
`tokenizers` package AIPerf installs, in the directory given by --work.

Per rate, each client sends --requests chat requests (--isl words in, --osl tokens out,
ignore_eos, streaming with include_usage) at one rate (constant arrivals by default, or
--arrival poisson); then the table compares:

- achieved vs requested rate (crestline: the load window's offered rate; AIPerf: requests over
  its benchmark duration, which includes the drain: its own definition);
- TTFT p50/p99 (crestline: from the intended send; AIPerf: its time_to_first_token);
- per-gap ITL p50 (crestline itl_ms; AIPerf inter_chunk_latency) and per-request TPOT p50
  (crestline tpot_ms; AIPerf inter_token_latency, which is per request);
- client CPU seconds (user + system of the client process and all its children, from
  wait4) per request and per streamed token. Start-up is included (a Python interpreter for
  crestline, several service processes for AIPerf), so short runs overstate both: use
  --requests in the hundreds or more for per-token figures.

With --stall, the server stalls 0.5 s every 2 s: the coordinated-omission case.

With --ladder R1,R2,..., each client also runs --ladder-requests requests at each of those rates
against a server made cheap enough not to be the limit (batch 4096, 1 ms a decode step, no
prefill cost, 16 output tokens): the highest rate at which a client delivers >= 99 % of what
was asked, every request ok, is the rate it sustains (AIPerf's achieved rate counts its drain,
so its figure is lowered by one request's end-to-end time over the run: ~1 % at 1000 requests).

    pip install aiperf            # into its own venv; point --aiperf at its `aiperf`
    python bench/llm_bench.py --aiperf /tmp/peer/bin/aiperf --rates 5,20,40 --requests 300

Run it on a quiet machine (the lead's job); write results to bench/RESULTS.md with the
command, commit, machine and date.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

_TOKENIZER_SNIPPET = r"""
import json, os, sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
words, d = sys.argv[1].split(), sys.argv[2]
vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2}
for w in words:
    vocab.setdefault(w, len(vocab))
tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tok.decoder = decoders.WordPiece(prefix="##")
os.makedirs(d, exist_ok=True)
tok.save(os.path.join(d, "tokenizer.json"))
json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]",
           "bos_token": "<s>", "eos_token": "</s>", "model_max_length": 10**6},
          open(os.path.join(d, "tokenizer_config.json"), "w"))
"""


def start_llama(python: str, model: Path) -> tuple[subprocess.Popen, int]:
    """llama.cpp's server (llama-cpp-python) over `model`, on a free loopback port, once it
    answers /v1/models. One thread, one request at a time (the server's own design);
    --interrupt_requests False so an arriving request does not cut the running stream."""
    import socket
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [python, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "m",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
         "--n_threads_batch", "1", "--chat_format", "chatml", "--interrupt_requests", "False",
         "--verbose", "False"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).read()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"llama.cpp's server did not come up ({python} -m llama_cpp.server)")


def start_server(flags: list[str]) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "crestline.servers.llm", "--port", "0",
                             *flags], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"the demo LLM server did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def timed(cmd: list[str], timeout_s: float) -> tuple[int, float, str]:
    """Run cmd; (exit code, CPU seconds of it and its children, stderr tail)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        t0 = time.monotonic()
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout_s:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace")
    # wait4's rusage covers the process and the children it waited for (AIPerf's services)
    return os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime, tail


def crestline_run(port: int, rate: float, n: int, isl: int, osl: int, work: Path,
                  arrival: str) -> dict:
    words = ("alpha bravo charlie delta echo foxtrot golf hotel " * (isl // 8 + 1)).split()[:isl]
    body = work / "chat.json"
    body.write_text(json.dumps({
        "model": "m", "messages": [{"role": "user", "content": " ".join(words)}],
        "max_completion_tokens": osl, "max_tokens": osl, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True}}))
    out = work / f"crestline_{rate:g}.json"
    code, cpu_s, err = timed(
        [sys.executable, "-m", "crestline.cli", "run",
         f"http://127.0.0.1:{port}/v1/chat/completions", "--method", "POST",
         "-H", "Content-Type: application/json", "--body", f"@{body}",
         "--rate", f"{rate:g}", "--duration", f"{n / rate:.3f}s", "--arrival", arrival,
         "--seed", "1", "--timeout", "120s", "--connections", "1024", "--quiet",
         "--out", str(out)], timeout_s=n / rate + 180)
    if code not in (0, 1):
        return {"error": err}
    d = json.loads(out.read_text())
    ok = d["requests"]["ok"]
    tokens = d.get("output_tokens", {}).get("total", 0)
    return {"requested_rps": rate, "achieved_rps": d["offered_rps"], "ok": ok,
            "errors": d["requests"]["errors"],
            "ttft_p50_ms": d["ttft_ms"]["p50"], "ttft_p99_ms": d["ttft_ms"]["p99"],
            "itl_p50_ms": d["itl_ms"]["p50"], "tpot_p50_ms": d["tpot_ms"]["p50"],
            "cpu_s": cpu_s, "cpu_ms_per_request": 1e3 * cpu_s / max(ok, 1),
            "cpu_us_per_token": 1e6 * cpu_s / max(tokens, 1)}


def aiperf_run(aiperf: str, port: int, rate: float, n: int, isl: int, osl: int, work: Path,
               tokenizer: Path, arrival: str) -> dict:
    out = work / f"aiperf_{rate:g}"
    shutil.rmtree(out, ignore_errors=True)
    code, cpu_s, err = timed(
        [aiperf, "profile", "--model", "m", "--url", f"http://127.0.0.1:{port}",
         "--endpoint-type", "chat", "--streaming", "--request-rate", f"{rate:g}",
         "--arrival-pattern", arrival, "--request-count", str(n), "--tokenizer",
         str(tokenizer), "--isl", str(isl), "--osl", str(osl), "--extra-inputs",
         "ignore_eos:true", "--extra-inputs", f"max_tokens:{osl}",
         "--output-artifact-dir", str(out), "--ui", "none",
         "--no-server-metrics", "--no-gpu-telemetry", "--random-seed", "1"],
        timeout_s=n / rate + 300)
    path = out / "profile_export_aiperf.json"
    if code != 0 or not path.exists():
        return {"error": err}
    d = json.loads(path.read_text())
    count = d["request_count"]["avg"]
    tokens = d.get("total_output_tokens", {}).get("avg", 0) or count * osl
    return {"requested_rps": rate,
            "achieved_rps": count / d["benchmark_duration"]["avg"],
            "ok": count, "errors": (d.get("error_summary") and len(d["error_summary"])) or 0,
            "ttft_p50_ms": d["time_to_first_token"]["p50"],
            "ttft_p99_ms": d["time_to_first_token"]["p99"],
            "itl_p50_ms": d["inter_chunk_latency"]["p50"],
            "tpot_p50_ms": d["inter_token_latency"]["p50"],
            "cpu_s": cpu_s, "cpu_ms_per_request": 1e3 * cpu_s / max(count, 1),
            "cpu_us_per_token": 1e6 * cpu_s / max(tokens, 1)}


def table(rows: list[dict]) -> str:
    cols = ("scenario", "client", "requested_rps", "achieved_rps", "ok", "errors",
            "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "tpot_p50_ms", "cpu_ms_per_request",
            "cpu_us_per_token")
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(
            f"{r.get(c):.3g}" if isinstance(r.get(c), float) else str(r.get(c, "-"))
            for c in cols) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--aiperf", default=shutil.which("aiperf") or "aiperf",
                   help="the aiperf executable (its venv's python builds the tokenizer)")
    p.add_argument("--rates", default="5,20,40", help="request rates, comma-separated")
    p.add_argument("--requests", type=int, default=300, help="requests per client per rate")
    p.add_argument("--isl", type=int, default=128, help="prompt words (tokens)")
    p.add_argument("--osl", type=int, default=64, help="output tokens")
    p.add_argument("--arrival", choices=("constant", "poisson"), default="constant",
                   help="both clients' arrivals (default constant: the rate error is exact)")
    p.add_argument("--stall", action="store_true", help="also a stalling server (0.5 s / 2 s)")
    p.add_argument("--ladder", default="", help="rates for the sustained-rate ladder (e.g. "
                   "50,100,200,400; default: none)")
    p.add_argument("--ladder-requests", type=int, default=1000)
    p.add_argument("--work", default=str(HERE / "out" / "llm"), help="output folder")
    p.add_argument("--llama", metavar="PYTHON", default="",
                   help="a python with llama-cpp-python[server] and gguf installed: serve "
                   "the steady rates from llama.cpp's server over a tiny model generated by "
                   "bench/tiny_gguf.py, instead of the demo LLM server (--stall and --ladder "
                   "still use the demo server: llama.cpp has no stall, and serves one "
                   "request at a time)")
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    if not Path(a.aiperf).exists() and shutil.which(a.aiperf) is None:
        raise SystemExit(f"--aiperf {a.aiperf}: not found; pip install aiperf (in its own venv)")
    tokenizer = work / "wordtok"
    vocab = ("alpha bravo charlie delta echo foxtrot golf hotel the quick brown fox jumps over "
             "a lazy dog while seven bright stars drift past quiet hills and rivers under an "
             "open sky")
    py = str(Path(a.aiperf).resolve().parent / "python")
    subprocess.run([py, "-c", _TOKENIZER_SNIPPET, vocab, str(tokenizer)], check=True)
    rates = [float(r) for r in a.rates.split(",")]
    scenarios = [("steady", [], rates, a.requests, a.osl)]
    if a.stall:
        scenarios.append(("stall", ["--pause-every-s", "2", "--pause-s", "0.5"], rates,
                          a.requests, a.osl))
    if a.ladder:
        scenarios.append(("fast", ["--max-batch", "4096", "--kv-tokens", "100000000",
                                   "--step-ms", "1", "--step-ms-per-seq", "0",
                                   "--prefill-ms-per-token", "0"],
                          [float(r) for r in a.ladder.split(",")], a.ladder_requests, 16))
    model = None
    if a.llama:
        model = work / "tiny.gguf"
        subprocess.run([a.llama, str(HERE / "tiny_gguf.py"), str(model)], check=True)
        scenarios[0] = ("llama.cpp", None, rates, a.requests, a.osl)
    rows = []
    for name, flags, ladder, n, osl in scenarios:
        for rate in ladder:
            for client in ("crestline", "aiperf"):
                # a fresh server: no state (a prompt cache, a queue) carried over
                server, port = (start_llama(a.llama, model) if flags is None
                                else start_server(flags))
                try:
                    r = (crestline_run(port, rate, n, a.isl, osl, work, a.arrival)
                         if client == "crestline" else
                         aiperf_run(a.aiperf, port, rate, n, a.isl, osl, work,
                                    tokenizer, a.arrival))
                finally:
                    server.terminate()
                    server.wait(10)
                rows.append({"scenario": name, "client": client, **r})
                print(json.dumps(rows[-1]), flush=True)
    (work / "llm_bench.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))
    if a.ladder:
        for client in ("crestline", "aiperf"):
            held = [r["requested_rps"] for r in rows if r["scenario"] == "fast"
                    and r["client"] == client and "error" not in r and not r["errors"]
                    and r["ok"] >= a.ladder_requests
                    and r["achieved_rps"] >= 0.99 * r["requested_rps"]]
            print(f"{client}: sustains {max(held):g} rps" if held else
                  f"{client}: sustains none of {a.ladder} rps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
