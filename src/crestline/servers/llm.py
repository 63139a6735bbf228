"""A demo LLM server with no weights: OpenAI-compatible completions and chat, streamed or not,
timed by a continuous-batching model (crestline.servers.llm_batch), so TTFT and inter-token
latency respond to load the way a real server's do.

    python -m crestline.servers.llm --port 0          # prints "listening on HOST:PORT"

    POST /v1/completions        {"model": "...", "prompt": "...", "max_tokens": 64,
                                 "stream": true, "stream_options": {"include_usage": true},
                                 "ignore_eos": true}
    POST /v1/chat/completions   {"messages": [{"role": "user", "content": "..."}], ...}
    GET  /v1/models, /health

Tokens are words: a prompt's token count is the number of whitespace-separated words in
`prompt` (or in every message's `content`); each output token is one word. Without
`ignore_eos` a request ends at an end-of-sequence drawn per request (geometric, mean
`--eos-mean-tokens`, seeded) or at `max_tokens`, whichever comes first; with it, at
`max_tokens` exactly. A stream is what vLLM sends: a role-only chunk at once (chat), one
chunk per token (`--tokens-per-chunk` merges several), a finish-reason chunk, a usage chunk
when `stream_options.include_usage` is set, and `data: [DONE]`; `--reasoning-tokens N` sends
the first N tokens as `reasoning_content`. `--pause-every-s P --pause-s S` stalls the whole
engine for S seconds every P seconds (a GC pause, a preemption): what coordinated omission
hides. The engine runs on one precise timer (a timerfd, as the test target's queue does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import deque

from crestline.servers.demo import render  # one JSON response, Content-Length framed
from crestline.servers.http import BodyRequestProtocol, serve_until_stopped
from crestline.servers.llm_batch import BatchScheduler, CostModel, Sequence
from crestline.servers.target import _DelayQueue as DelayQueue

MODEL = "crestline-demo-llm"
MAX_BODY_BYTES = 16 << 20
_VOCAB = [json.dumps(" " + w).encode() for w in (
    "the quick brown fox jumps over a lazy dog while seven bright stars drift past "
    "quiet hills and rivers under an open sky").split()]
_SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n")


class BadRequest(Exception):
    pass


def error_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def prompt_words(body: dict, chat: bool) -> list[str]:
    """The prompt's tokens (words) of a completions or chat request body."""
    if chat:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise BadRequest("'messages' must be a non-empty list")
        words = []
        for m in msgs:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            if not isinstance(content, str):
                raise BadRequest("every message needs a string 'content'")
            words.extend(content.split())
        return words
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return [str(t) for t in prompt]  # token ids: one token each
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string (one prompt) or a list of token ids")
    return prompt.split()


class Stream:
    """One request's response: SSE chunks as its tokens come, or one JSON at the end."""

    def __init__(self, server: LlmServer, conn: _Conn, body: dict, chat: bool, keep_alive: bool):
        self.server, self.conn, self.chat, self.keep_alive = server, conn, chat, keep_alive
        words = prompt_words(body, chat)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 128 if chat else 16))
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise BadRequest("'max_tokens' must be an integer >= 1")
        if body.get("n", 1) != 1:
            raise BadRequest("only n=1 is served")
        cost = server.cost
        if len(words) + max_tokens > cost.kv_tokens:
            raise BadRequest(f"prompt ({len(words)} tokens) + max_tokens ({max_tokens}) is over "
                             f"the context of {cost.kv_tokens} tokens")
        self.stream = bool(body.get("stream", False))
        opts = body.get("stream_options") or {}
        self.include_usage = bool(opts.get("include_usage", False)) if self.stream else True
        out = max_tokens if body.get("ignore_eos") else min(max_tokens, server.eos_length())
        self.finish_reason = "length" if out == max_tokens else "stop"
        bt = cost.block_tokens
        blocks = tuple(hash(tuple(words[: k + bt])) for k in range(0, len(words) - bt + 1, bt))
        self.seq = Sequence(len(words), out, blocks, handle=self)
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{server.next_id()}"
        self.text: list[bytes] = []
        self.pending: list[bytes] = []  # tokens not yet sent (multi-token chunks)
        created = int(time.time())
        if chat:
            self.head = (b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,'
                         b'"model":"%s","choices":[{"index":0,"delta":{'
                         % (self.id.encode(), created, MODEL.encode()))
            self.tail = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        else:
            self.head = (b'data: {"id":"%s","object":"text_completion","created":%d,'
                         b'"model":"%s","choices":[{"index":0,' % (self.id.encode(), created,
                                                                   MODEL.encode()))
            self.tail = b',"logprobs":null,"finish_reason":null}]}\n\n'

    def begin(self) -> None:
        if self.stream:
            first = _SSE_HEAD
            if self.chat:  # vLLM's role-only first chunk, sent before any token exists
                first += chunk(self.head + b'"role":"assistant","content":""' + self.tail)
            self.conn.write(first)
        self.server.engine.add(self.seq)
        self.server.wake()

    def token(self) -> None:
        seq = self.seq
        word = _VOCAB[(seq.emitted * 7 + seq.prompt_tokens) % len(_VOCAB)]
        if not self.stream:
            self.text.append(word)
            return
        self.pending.append(word)
        # A chunk holds one kind: the last reasoning token closes its chunk.
        if (len(self.pending) < self.server.tokens_per_chunk and not seq.done
                and seq.emitted != self.server.reasoning_tokens):
            return
        text = b'"' + b"".join(w[1:-1] for w in self.pending) + b'"'
        self.pending = []
        reasoning = seq.emitted <= self.server.reasoning_tokens
        if self.chat:
            field = b'"reasoning_content":' if reasoning else b'"content":'
        else:
            field = b'"text":'
        self.conn.write(chunk(self.head + field + text + self.tail))

    def end(self) -> None:
        seq = self.seq
        usage = (b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}'
                 % (seq.prompt_tokens, seq.emitted, seq.prompt_tokens + seq.emitted))
        reason = json.dumps(self.finish_reason).encode()
        if self.stream:
            if self.chat:
                last = self.head + b"}" + self.tail.replace(b'"finish_reason":null',
                                                            b'"finish_reason":' + reason)[1:]
            else:
                last = self.head + b'"text":""' + self.tail.replace(b'"finish_reason":null',
                                                                    b'"finish_reason":' + reason)
            out = chunk(last)
            if self.include_usage:
                kind = b"chat.completion.chunk" if self.chat else b"text_completion"
                out += chunk(b'data: {"id":"%s","object":"%s","created":%d,"model":"%s",'
                             b'"choices":[],"usage":%s}\n\n'
                             % (self.id.encode(), kind, int(time.time()), MODEL.encode(), usage))
            self.conn.write(out + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        else:
            text = "".join(json.loads(w) for w in self.text)
            choice = ({"index": 0, "message": {"role": "assistant", "content": text},
                       "finish_reason": self.finish_reason} if self.chat else
                      {"index": 0, "text": text, "finish_reason": self.finish_reason})
            body = {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                    "created": int(time.time()), "model": MODEL, "choices": [choice],
                    "usage": json.loads(usage)}
            self.conn.write(render(200, json.dumps(body).encode(), self.keep_alive))
        self.conn.finished(self.keep_alive)


class _Conn(BodyRequestProtocol):
    """One connection: requests answered in order, one at a time."""

    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, server: LlmServer):
        super().__init__()
        self.server = server
        self.queue: deque = deque()
        self.current: Stream | None = None

    def bad_request(self) -> bytes:
        return render(400, error_body("malformed HTTP request"), False)

    def on_message_complete(self):
        self.queue.append((self.parser.get_method(), self.url.split(b"?", 1)[0],
                           b"".join(self.body), self.body_bytes, self.parser.should_keep_alive()))
        if self.current is None:
            self._next()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def finished(self, keep_alive: bool) -> None:
        self.current = None
        if not keep_alive and self.transport is not None:
            self.transport.close()
            return
        self._next()

    def _next(self) -> None:
        while self.queue and self.current is None and self.transport is not None:
            method, path, body, size, keep_alive = self.queue.popleft()
            reply = self.server.route(self, method, path, body, size, keep_alive)
            if reply is not None:
                self.write(reply)
                if not keep_alive:
                    self.transport.close()

    def connection_lost(self, exc):
        super().connection_lost(exc)
        if self.current is not None:
            self.current.seq.cancelled = True  # frees its batch slot and KV at the next step
            self.current = None
        self.queue.clear()


class LlmServer:
    """Routes requests and runs the engine's step loop on one precise timer."""

    def __init__(self, args, loop):
        self.cost = CostModel(args.max_batch, args.kv_tokens, args.step_ms, args.step_ms_per_seq,
                              args.prefill_ms_per_token)
        self.engine = BatchScheduler(self.cost, prefix_cache=args.prefix_cache)
        self.timer = DelayQueue(loop)
        self.rng = random.Random(args.seed)
        self.eos_mean = args.eos_mean_tokens
        self.tokens_per_chunk = args.tokens_per_chunk
        self.reasoning_tokens = args.reasoning_tokens
        self.pause_every_ns = int(args.pause_every_s * 1e9)
        self.pause_ns = int(args.pause_s * 1e9)
        self.next_pause_ns = time.monotonic_ns() + self.pause_every_ns
        self.stepping = False
        self.step_end_ns = 0
        self.ids = 0

    def next_id(self) -> int:
        self.ids += 1
        return self.ids

    def eos_length(self) -> int:
        """Where the end of sequence falls: geometric, mean eos_mean tokens, at least 1."""
        return 1 + int(self.rng.expovariate(1.0 / max(self.eos_mean - 1, 1e-9)))

    def route(self, conn: _Conn, method: bytes, path: bytes, body: bytes, size: int,
              keep_alive: bool) -> bytes | None:
        if path in (b"/v1/completions", b"/v1/chat/completions"):
            if method != b"POST":
                return render(405, error_body(f"use POST for {path.decode()}"), keep_alive)
            if size > MAX_BODY_BYTES:
                return render(413, error_body(f"body over {MAX_BODY_BYTES} bytes"), keep_alive)
            try:
                doc = json.loads(body)
                if not isinstance(doc, dict):
                    raise BadRequest("the body must be a JSON object")
                stream = Stream(self, conn, doc, path.endswith(b"chat/completions"), keep_alive)
            except (ValueError, BadRequest) as exc:
                return render(400, error_body(str(exc)), keep_alive)
            conn.current = stream
            stream.begin()
            return None
        if path == b"/v1/models" and method == b"GET":
            return render(200, json.dumps({"object": "list", "data": [
                {"id": MODEL, "object": "model", "owned_by": "crestline"}]}).encode(), keep_alive)
        if path == b"/health" and method == b"GET":
            return render(200, b"", keep_alive)
        return render(404, error_body(f"no route for {method.decode()} {path.decode()}: try "
                                      f"POST /v1/chat/completions"), keep_alive)

    def wake(self) -> None:
        """A sequence is waiting: start stepping if the engine is idle."""
        if not self.stepping:
            self.stepping = True
            self.step_end_ns = time.monotonic_ns()
            self._step()

    def _step(self) -> None:
        joining, step_ms = self.engine.plan()
        # Steps follow each other on the engine's own time line, so a late timer wake never
        # stretches the simulated server.
        start_ns = max(self.step_end_ns, time.monotonic_ns() - 1_000_000)
        dur_ns = int(step_ms * 1e6)
        if self.pause_every_ns and start_ns >= self.next_pause_ns:
            dur_ns += self.pause_ns
            self.next_pause_ns = start_ns + self.pause_every_ns
        self.step_end_ns = start_ns + dur_ns
        self.timer.push(self.step_end_ns, self._step_done)

    def _step_done(self) -> None:
        stepped, ended = self.engine.finish()
        for seq in stepped:
            seq.handle.token()
        for seq in ended:
            seq.handle.end()
        if self.engine.busy:
            self._step()
        else:
            self.stepping = False


EXAMPLES = """\
examples:
  python -m crestline.servers.llm --port 8001
  python -m crestline.servers.llm --port 0 --max-batch 16 --pause-every-s 2 --pause-s 0.3
  crestline run http://127.0.0.1:8001/v1/chat/completions --method POST \\
      -H 'Content-Type: application/json' --body @chat.json --rate 20
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m crestline.servers.llm", description=__doc__,
                                epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = CostModel()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001, help="0 picks a free port (printed)")
    p.add_argument("--max-batch", type=int, default=d.max_batch,
                   help=f"sequences decoded together at most (default {d.max_batch})")
    p.add_argument("--kv-tokens", type=int, default=d.kv_tokens,
                   help=f"KV-cache budget in tokens (default {d.kv_tokens})")
    p.add_argument("--step-ms", type=float, default=d.step_ms,
                   help=f"decode step time, fixed part (default {d.step_ms:g})")
    p.add_argument("--step-ms-per-seq", type=float, default=d.step_ms_per_seq,
                   help=f"decode step time per running sequence (default {d.step_ms_per_seq:g})")
    p.add_argument("--prefill-ms-per-token", type=float, default=d.prefill_ms_per_token,
                   help=f"prefill time per prompt token (default {d.prefill_ms_per_token:g})")
    p.add_argument("--prefix-cache", action="store_true",
                   help="cached leading prompt blocks cost no prefill")
    p.add_argument("--eos-mean-tokens", type=float, default=64.0,
                   help="mean output length without ignore_eos (default 64)")
    p.add_argument("--tokens-per-chunk", type=int, default=1,
                   help="tokens per streamed chunk (default 1)")
    p.add_argument("--reasoning-tokens", type=int, default=0,
                   help="chat: the first N tokens are reasoning_content (default 0)")
    p.add_argument("--pause-every-s", type=float, default=0.0,
                   help="stall the engine every this many seconds (default 0: never)")
    p.add_argument("--pause-s", type=float, default=0.0, help="how long each stall lasts")
    p.add_argument("--seed", type=int, default=0, help="seed of the end-of-sequence draws")
    p.add_argument("--max-seconds", type=float, default=None, help="exit after this long")
    return p


async def serve(args) -> None:
    """Serve until SIGTERM/SIGINT or `args.max_seconds`, printing `listening on HOST:PORT`."""
    server = LlmServer(args, asyncio.get_running_loop())
    await serve_until_stopped(lambda: _Conn(server), args.host, args.port, args.max_seconds)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("max_batch", "kv_tokens", "tokens_per_chunk"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("step_ms", "step_ms_per_seq", "prefill_ms_per_token", "pause_every_s",
                 "pause_s", "reasoning_tokens"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if not args.eos_mean_tokens >= 1:
        parser.error("--eos-mean-tokens must be >= 1")
    if args.max_seconds is not None and not args.max_seconds > 0:
        parser.error("--max-seconds must be > 0")
    import uvloop

    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
