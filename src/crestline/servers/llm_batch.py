"""The demo LLM server's engine, pure: continuous batching over a KV-cache budget, in steps.

No weights and no clock: `BatchScheduler.plan()` says which waiting sequences join the batch
and how long the next step takes; `finish()` hands one token to every sequence in the batch
and says which are done. `crestline.servers.llm` runs it on the event loop; tests run it in
virtual time. The cost model is the one real servers (vLLM, SGLang, TGI) are shaped by:

- a step's time is `step_ms + step_ms_per_seq * batch` (decode reads the weights once per
  step and the KV of every sequence), plus `prefill_ms_per_token` for each prompt token of the
  sequences that join in this step (their prefill rides in the step; the step also gives them
  their first token, as a prefill does);
- at most `max_batch` sequences run; a sequence reserves `prompt + max_tokens` KV tokens when
  it joins and frees them when it ends, and waits (FIFO, head of line first) while they do not
  fit in `kv_tokens`;
- with a prefix cache, leading prompt blocks (`block_tokens` tokens) that an earlier prompt
  already filled cost no prefill.

Capacity in steady state (`capacity_rps`): per second, the steps' time adds up to 1 s. With
rate λ, P prompt tokens and O output tokens per request and b sequences per step, there are
λ O / b steps a second, so 1 = (λ O / b)(step_ms + step_ms_per_seq b) + λ P prefill_ms_per_token
(in seconds); the highest λ has b at its limit B = min(max_batch, kv_tokens // (P + O)):
λ_max = 1 / (O (step_ms / B + step_ms_per_seq) + P prefill_ms_per_token).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CostModel:
    """The simulated server's costs and limits (ms and tokens)."""

    max_batch: int = 64
    kv_tokens: int = 65_536
    step_ms: float = 8.0
    step_ms_per_seq: float = 0.25
    prefill_ms_per_token: float = 0.02
    block_tokens: int = 16

    def step_time_ms(self, batch: int, prefill_tokens: int) -> float:
        """One step's time with `batch` sequences running and `prefill_tokens` to prefill."""
        return (self.step_ms + self.step_ms_per_seq * batch
                + self.prefill_ms_per_token * prefill_tokens)

    def batch_limit(self, prompt_tokens: int, output_tokens: int) -> int:
        """The most sequences of this shape that run at once (batch size or KV budget)."""
        return max(1, min(self.max_batch, self.kv_tokens // (prompt_tokens + output_tokens)))

    def capacity_rps(self, prompt_tokens: int, output_tokens: int) -> float:
        """The highest steady request rate for requests of P prompt and O output tokens (no
        prefix cache hits); see the module docstring."""
        b = self.batch_limit(prompt_tokens, output_tokens)
        per_request_ms = (output_tokens * (self.step_ms / b + self.step_ms_per_seq)
                          + prompt_tokens * self.prefill_ms_per_token)
        return 1e3 / per_request_ms


@dataclass(eq=False)
class Sequence:
    """One request in the engine. `blocks`: hashes of its prompt's leading full blocks."""

    prompt_tokens: int
    max_tokens: int         # tokens it will produce (the EOS is decided up front)
    blocks: tuple = ()
    emitted: int = 0
    cached_tokens: int = 0
    cancelled: bool = False
    handle: object = None   # the server's per-request state
    kv: int = field(init=False, default=0)

    @property
    def done(self) -> bool:
        return self.emitted >= self.max_tokens


class PrefixCache:
    """Prompt blocks held in the KV cache, least recently used out first."""

    def __init__(self, max_blocks: int):
        self.max_blocks = max_blocks
        self.blocks: OrderedDict = OrderedDict()

    def hit_blocks(self, blocks: tuple) -> int:
        """How many leading blocks are cached (and mark them used)."""
        n = 0
        for b in blocks:
            if b not in self.blocks:
                break
            self.blocks.move_to_end(b)
            n += 1
        return n

    def add(self, blocks: tuple) -> None:
        for b in blocks:
            self.blocks[b] = None
            self.blocks.move_to_end(b)
        while len(self.blocks) > self.max_blocks:
            self.blocks.popitem(last=False)


class BatchScheduler:
    """FIFO admission into a running batch under `max_batch` and `kv_tokens`."""

    def __init__(self, cost: CostModel, prefix_cache: bool = False):
        self.cost = cost
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.kv_used = 0
        self.cache = PrefixCache(cost.kv_tokens // cost.block_tokens) if prefix_cache else None

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    def plan(self) -> tuple[list[Sequence], float]:
        """Admit what fits; returns (the sequences joining, the step's time in ms)."""
        joining: list[Sequence] = []
        prefill = 0
        while self.waiting:
            seq = self.waiting[0]
            if seq.cancelled:
                self.waiting.popleft()
                continue
            need = seq.prompt_tokens + seq.max_tokens
            if (len(self.running) + len(joining) >= self.cost.max_batch
                    or self.kv_used + need > self.cost.kv_tokens):
                break  # head of line waits: FCFS, as vLLM schedules by default
            self.waiting.popleft()
            seq.kv = need
            self.kv_used += need
            if self.cache is not None:
                seq.cached_tokens = min(self.cache.hit_blocks(seq.blocks) * self.cost.block_tokens,
                                        seq.prompt_tokens - 1)
                self.cache.add(seq.blocks)
            prefill += seq.prompt_tokens - seq.cached_tokens
            joining.append(seq)
        self.running.extend(joining)
        return joining, self.cost.step_time_ms(len(self.running), prefill)

    def finish(self) -> tuple[list[Sequence], list[Sequence]]:
        """The step ended: every running sequence got one more token. Returns (the sequences
        that got a token, those of them now done); done and cancelled ones leave the batch."""
        stepped, ended, keep = [], [], []
        for seq in self.running:
            if seq.cancelled:
                self.kv_used -= seq.kv
                continue
            seq.emitted += 1
            stepped.append(seq)
            if seq.done:
                ended.append(seq)
                self.kv_used -= seq.kv
            else:
                keep.append(seq)
        self.running = keep
        return stepped, ended



# `crestline demo --llm`: the server's costs. The cost is linear in P and O at a full batch, so
# a mix's capacity is capacity_rps at its mean lengths: about 33 rps for the demo's mix
# (crestline.engine.llm_workload.DEMO_*: 100-word prompts, 16 output tokens on average). Slow
# steps keep the tokens per second (the server's own CPU, on the client's host) modest.
DEMO_COST = CostModel(max_batch=16, step_ms=20.0, step_ms_per_seq=0.5,
                      prefill_ms_per_token=0.02)


def demo_flags() -> list[str]:
    """The demo LLM server's command-line flags for DEMO_COST."""
    c = DEMO_COST
    return ["--max-batch", str(c.max_batch), "--kv-tokens", str(c.kv_tokens), "--step-ms",
            f"{c.step_ms:g}", "--step-ms-per-seq", f"{c.step_ms_per_seq:g}",
            "--prefill-ms-per-token", f"{c.prefill_ms_per_token:g}"]
