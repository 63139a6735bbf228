"""LLM workloads as traces: OpenAI `/v1/chat/completions` or `/v1/completions` request bodies,
synthesised from prompt and output length distributions or read from a JSONL dataset, written
as a `.cltrace` that `crestline run` / `search` / `sweep --trace` replay (constant or Poisson
arrivals draw a request at random per slot, so the length mix holds at any rate).

    python -m crestline.engine.llm_workload synth --n 500 --prompt-tokens normal:512,128 \\
        --output-tokens uniform:64,256 --shared-prefix 8:256 --out chat.cltrace
    python -m crestline.engine.llm_workload jsonl prompts.jsonl --output-tokens fixed:128 \\
        --out chat.cltrace
    crestline run http://127.0.0.1:8001/ --trace chat.cltrace --arrival poisson --rate 10

Multi-turn conversations (`--turns T --think-s S`, chat only): N conversations of T turns,
turn k's messages holding the earlier turns (the user's, and an assistant reply as long as
that turn's max_tokens), each turn recorded with its conversation id, turn number and think
time. A replay sends first turns on the arrival process and each later turn S seconds after
the previous turn of its conversation ended (docs/llm.md, "Conversations").

Lengths `trace:FILE` are the empirical distribution of a recorded `.cltrace` (`crestline
record` in front of the server keeps each response's usage: prompt_tokens, completion_tokens)
or a JSONL dataset: each request drawn at random from the recorded lengths (see lengths_of).

Lengths are in words: a synthesised prompt of N tokens is N words (the demo LLM server counts
one token per word; a real tokenizer makes roughly 1.3 tokens of an English word). The output
length is `max_tokens`, with `ignore_eos` (vLLM, SGLang) so the server produces exactly that
many unless --no-ignore-eos. Every body streams (`stream: true` with
`stream_options.include_usage`, so the server's token count comes back) unless --no-stream.
Shared-prefix groups: G groups each with its own P-word prefix (a system prompt, a long
document), every request in one group starting with it: what a prefix cache reuses. Pure:
json, numpy and the trace writer.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

from crestline.errors import ConfigError
from crestline.trace.format import TraceRecord, write_trace

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
_WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
          "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
          "zulu").split()


@dataclass(frozen=True)
class Lengths:
    """A token-length distribution: fixed:N, uniform:LO,HI (inclusive), normal:MEAN,SD
    (rounded, at least 1), or trace:FILE (empirical: drawn from `values`, the lengths
    recorded in FILE)."""

    kind: str
    a: float
    b: float = 0.0
    values: tuple = ()

    @classmethod
    def parse(cls, text: str, option: str) -> Lengths:
        kind, _, args = text.partition(":")
        if kind == "trace":
            which = "output" if "output" in option else "prompt"
            return cls("empirical", 0, 0, tuple(lengths_of(args, which, option)))
        try:
            nums = [float(x) for x in args.split(",")] if args else []
        except ValueError:
            nums = None
        want = {"fixed": 1, "uniform": 2, "normal": 2}.get(kind)
        if want is None or nums is None or len(nums) != want or min(nums) < (
                0 if kind == "normal" else 1) or (kind == "uniform" and nums[1] < nums[0]):
            raise ConfigError(f"{option} {text!r}: write fixed:N, uniform:LO,HI, "
                              f"normal:MEAN,SD (lengths >= 1) or trace:FILE, e.g. {option} "
                              "normal:512,128")
        return cls(kind, *nums)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "empirical":
            out = rng.choice(np.asarray(self.values), n)
        elif self.kind == "fixed":
            out = np.full(n, self.a)
        elif self.kind == "uniform":
            out = rng.integers(int(self.a), int(self.b) + 1, n)
        else:
            out = rng.normal(self.a, self.b, n)
        return np.maximum(np.rint(out), 1).astype(np.int64)


def _text_words(body: dict) -> int:
    """Words of a request's prompt (completions) or of all its messages' text (chat)."""
    if isinstance(body.get("prompt"), str):
        return len(body["prompt"].split())
    n = 0
    for m in body.get("messages") or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            n += len(content.split())
        elif isinstance(content, list):  # content parts: count the text ones
            n += sum(len(p.get("text", "").split()) for p in content if isinstance(p, dict))
    return n


def lengths_of(path: str, which: str, option: str = "--prompt-tokens") -> list[int]:
    """The recorded lengths of `which` ("prompt" or "output") per request in `path`: a
    .cltrace (the response's usage where `crestline record` kept one, else the prompt's words
    or the request's max_tokens) or a JSONL dataset (prompt_tokens / output_tokens fields,
    else the prompt's words or max_tokens). Raises ConfigError naming `option`."""
    from crestline.trace.format import TraceError, read_trace

    rows: list[tuple[dict, dict]] = []  # (request body, recorded usage)
    try:
        if path.endswith((".jsonl", ".json")):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        if isinstance(row, dict):
                            rows.append((row, {"prompt_tokens": row.get("prompt_tokens"),
                                               "completion_tokens": row.get("output_tokens")}))
        else:
            for r in read_trace(path).records:
                try:
                    body = json.loads(r.body) if r.body else {}
                except ValueError:
                    continue
                if isinstance(body, dict):
                    rows.append((body, r.extras or {}))
    except OSError as exc:
        raise ConfigError(f"{option} trace:{path}: {exc.strerror}") from None
    except (ValueError, TraceError) as exc:
        raise ConfigError(f"{option} trace:{path}: not a .cltrace or JSONL file ({exc})") \
            from None
    out = []
    for body, usage in rows:
        if which == "prompt":
            n = usage.get("prompt_tokens") or _text_words(body)
        else:
            n = (usage.get("completion_tokens") or body.get("max_tokens")
                 or body.get("max_completion_tokens") or body.get("output_tokens"))
        if isinstance(n, int) and n > 0:
            out.append(n)
    if not out:
        raise ConfigError(f"{option} trace:{path}: no {which} lengths in it (LLM request "
                          "bodies with prompts, or max_tokens / recorded usage)")
    return out


def words(rng: np.random.Generator, n: int) -> str:
    return " ".join(_WORDS[i] for i in rng.integers(0, len(_WORDS), n))


def request_body(api: str, prompt: str, max_tokens: int, *, model: str, stream: bool = True,
                 ignore_eos: bool = True) -> dict:
    """One OpenAI request body for `prompt` (chat: one user message)."""
    body: dict = {"model": model, "max_tokens": int(max_tokens)}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if ignore_eos:
        body["ignore_eos"] = True
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def synthesise(n: int, api: str, prompt: Lengths, output: Lengths, *, groups: int = 0,
               prefix_tokens: int = 0, seed: int = 0, **body_opts) -> list[dict]:
    """n request bodies; with groups > 0, request i starts with group (i mod groups)'s
    prefix_tokens-word prefix, counted inside its drawn prompt length."""
    rng = np.random.default_rng(seed)
    prefixes = [words(rng, prefix_tokens) for _ in range(groups)]
    plen, olen = prompt.draw(rng, n), output.draw(rng, n)
    out = []
    for i in range(n):
        if groups:
            tail = max(int(plen[i]) - prefix_tokens, 1)
            text = prefixes[i % groups] + " " + words(rng, tail)
        else:
            text = words(rng, int(plen[i]))
        out.append(request_body(api, text, int(olen[i]), **body_opts))
    return out


def conversations(n: int, turns: int, prompt: Lengths, output: Lengths, *, seed: int = 0,
                  **body_opts) -> list[list[dict]]:
    """n chat conversations of `turns` turns: turn k's body holds the k earlier user
    messages and assistant replies (a reply as many words as its turn's max_tokens, what the
    server would have said) and a new user message of a drawn prompt length."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        plen, olen = prompt.draw(rng, turns), output.draw(rng, turns)
        history: list[dict] = []
        conv = []
        for k in range(turns):
            history.append({"role": "user", "content": words(rng, int(plen[k]))})
            body = request_body("chat", "", int(olen[k]), **body_opts)
            body["messages"] = list(history)
            conv.append(body)
            history.append({"role": "assistant", "content": words(rng, int(olen[k]))})
        out.append(conv)
    return out


def write_conversations(path: str, convs: list[list[dict]], think_s: float,
                        source: str) -> int:
    """Write conversations as a .cltrace: every turn a record with extras conversation, turn
    and think_s (the pause after the previous turn ended; 0 for the first)."""
    headers = [("Content-Type", "application/json")]
    recs = []
    for c, conv in enumerate(convs):
        for k, b in enumerate(conv):
            recs.append(TraceRecord(len(recs) * 1_000_000, "POST", PATHS["chat"], headers,
                                    json.dumps(b, separators=(",", ":")).encode(),
                                    {"model": b["model"], "conversation": c, "turn": k,
                                     "think_s": think_s if k else 0.0}))
    return write_trace(path, iter(recs), source=source,
                       meta={"api": "chat", "requests": len(recs),
                             "conversations": len(convs)})


def from_jsonl(path: str, api: str, output: Lengths | None, *, seed: int = 0,
               **body_opts) -> list[dict]:
    """Bodies from a JSONL dataset: each line a {"prompt": str} or {"messages": [...]}, with
    an optional "max_tokens" (or "output_tokens"); `output` draws the rest."""
    rng = np.random.default_rng(seed)
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln for ln in f if ln.strip()]
    except OSError as exc:
        raise ConfigError(f"--dataset {path}: {exc.strerror}") from None
    for k, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            raise ConfigError(f"{path} line {k}: not JSON; write one object per line, e.g. "
                              '{"prompt": "..."}') from None
        max_tokens = row.get("max_tokens", row.get("output_tokens")) if isinstance(
            row, dict) else None
        if max_tokens is None:
            if output is None:
                raise ConfigError(f"{path} line {k}: no max_tokens; give --output-tokens")
            max_tokens = int(output.draw(rng, 1)[0])
        if isinstance(row, dict) and isinstance(row.get("messages"), list) and api == "chat":
            body = request_body(api, "", max_tokens, **body_opts)
            body["messages"] = row["messages"]
        elif isinstance(row, dict) and isinstance(row.get("prompt"), str):
            body = request_body(api, row["prompt"], max_tokens, **body_opts)
        else:
            raise ConfigError(f"{path} line {k}: needs a string \"prompt\" (or \"messages\" "
                              "with --api chat)")
        out.append(body)
    if not out:
        raise ConfigError(f"--dataset {path}: no requests in it")
    return out


def write_workload(path: str, bodies: list[dict], api: str, source: str) -> int:
    """Write bodies as a .cltrace (1 ms apart: their timing is not the point)."""
    headers = [("Content-Type", "application/json")]
    recs = (TraceRecord(i * 1_000_000, "POST", PATHS[api], headers,
                        json.dumps(b, separators=(",", ":")).encode(), {"model": b["model"]})
            for i, b in enumerate(bodies))
    return write_trace(path, recs, source=source, meta={"api": api, "requests": len(bodies)})


# `crestline demo --llm`'s mix: prompt words normal(100, 30), outputs uniform 8..24 tokens.
DEMO_PROMPT_WORDS = (100, 30)
DEMO_OUTPUT_TOKENS = (8, 24)


def write_demo_workload(path: str, n: int = 400, seed: int = 1) -> tuple[float, float]:
    """The `crestline demo --llm` mix as a .cltrace (chat, streamed with usage); returns its
    mean prompt and output lengths (words, tokens)."""
    bodies = synthesise(n, "chat", Lengths("normal", *DEMO_PROMPT_WORDS),
                        Lengths("uniform", *DEMO_OUTPUT_TOKENS), seed=seed,
                        model="crestline-demo-llm")
    write_workload(path, bodies, "chat", "crestline demo --llm")
    return (float(np.mean([len(b["messages"][0]["content"].split()) for b in bodies])),
            float(np.mean([b["max_tokens"] for b in bodies])))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m crestline.engine.llm_workload",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("synth", "jsonl"):
        s = sub.add_parser(name)
        if name == "jsonl":
            s.add_argument("dataset")
        else:
            s.add_argument("--n", type=int, default=1000, help="requests (default 1000)")
            s.add_argument("--prompt-tokens", default="fixed:256",
                           help="fixed:N, uniform:LO,HI, normal:MEAN,SD or trace:FILE (the "
                           "lengths recorded in a .cltrace or JSONL; default fixed:256)")
            s.add_argument("--shared-prefix", default=None, metavar="GROUPS:TOKENS",
                           help="GROUPS prefixes of TOKENS words, one per request group")
            s.add_argument("--turns", type=int, default=1,
                           help="turns per conversation (chat; --n conversations)")
            s.add_argument("--think-s", type=float, default=0.0,
                           help="seconds between a turn's end and the next turn")
        s.add_argument("--output-tokens", default="fixed:128" if name == "synth" else None,
                       help="max_tokens distribution, as --prompt-tokens (default fixed:128)")
        s.add_argument("--api", choices=sorted(PATHS), default="chat")
        s.add_argument("--model", default="crestline-demo-llm")
        s.add_argument("--no-ignore-eos", action="store_true")
        s.add_argument("--no-stream", action="store_true")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--out", required=True, help="the .cltrace to write")
    a = p.parse_args(argv)
    opts = {"model": a.model, "stream": not a.no_stream, "ignore_eos": not a.no_ignore_eos}
    try:
        output = (Lengths.parse(a.output_tokens, "--output-tokens")
                  if a.output_tokens else None)
        if a.cmd == "synth":
            if a.n < 1:
                raise ConfigError(f"--n {a.n}: give at least 1 request")
            groups = prefix = 0
            if a.shared_prefix:
                g, _, t = a.shared_prefix.partition(":")
                if not (g.isdigit() and t.isdigit() and int(g) >= 1 and int(t) >= 1):
                    raise ConfigError(f"--shared-prefix {a.shared_prefix!r}: write "
                                      "GROUPS:TOKENS, e.g. --shared-prefix 8:256")
                groups, prefix = int(g), int(t)
            prompt = Lengths.parse(a.prompt_tokens, "--prompt-tokens")
            if a.turns != 1 or a.think_s:
                if a.turns < 1 or a.think_s < 0 or a.api != "chat" or groups:
                    raise ConfigError(f"--turns {a.turns} --think-s {a.think_s:g}: give "
                                      "--turns >= 1 and --think-s >= 0, with --api chat and "
                                      "no --shared-prefix")
                convs = conversations(a.n, a.turns, prompt, output, seed=a.seed, **opts)
                n = write_conversations(a.out, convs, a.think_s, "crestline llm_workload synth")
                print(f"wrote {a.n} conversations of {a.turns} turns ({n} chat requests) to "
                      f"{a.out}")
                return 0
            bodies = synthesise(a.n, a.api, prompt, output, groups=groups,
                                prefix_tokens=prefix, seed=a.seed, **opts)
        else:
            bodies = from_jsonl(a.dataset, a.api, output, seed=a.seed, **opts)
        n = write_workload(a.out, bodies, a.api, f"crestline llm_workload {a.cmd}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} {a.api} requests to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
