#!/usr/bin/env python3
"""Write a tiny llama-architecture GGUF model with seeded random weights, so that a real
OpenAI-compatible LLM server (llama.cpp's, e.g. through `llama-cpp-python[server]`) can run on
a CPU-only machine that cannot download weights. The text it produces is gibberish; what
matters for a load generator is that the server does real tokenisation, prefill and decode.

    pip install gguf numpy
    python bench/tiny_gguf.py /tmp/tiny.gguf [--seed 0] [--layers 2] [--embd 64] [--f16]

What is in the file:
- a SentencePiece-style ("llama") vocabulary: <unk>, <s>, </s>, the 256 byte tokens
  <0x00>..<0xFF> (byte fallback, so any text tokenises), then a few hundred pieces (letters,
  digits, punctuation, common English words and every prefix of them, since llama.cpp's SPM
  tokeniser only builds a piece by merging two pieces that are themselves in the vocabulary);
- a ChatML chat template, the exact string llama-cpp-python recognises as "chatml";
- llama.context_length 2048 (--ctx), RoPE over the whole head, RMSNorm eps 1e-5.

Fixed output length: random weights would end a stream at </s> whenever it happens to be
sampled, so by default the model is built so that it never emits </s> (nor <s>, <unk>, the
non-ASCII or control bytes, or "<", which starts the server's stop strings and makes it hold
text back): embedding channel 0 is a constant that no block reads or writes, and the output
head gives that channel +margin for every allowed token and -margin for the rest, tens of
logits apart. A stream then always runs to max_tokens, one printable piece per token, with
no request field needed. --allow-eos lets </s> be sampled like any other token; then
"logit_bias": {"2": -100} or llama-cpp-python's "min_tokens" = max_tokens fixes the length.

Serving it (llama-cpp-python serves one request at a time; --interrupt_requests False stops a
newly arrived request from cutting the running stream short with an early [DONE]):

    pip install 'llama-cpp-python[server]'   # builds llama.cpp from source: ~5 min on 2 cores
    python -m llama_cpp.server --model /tmp/tiny.gguf --model_alias tiny \
        --host 127.0.0.1 --port 8765 --n_ctx 2048 --n_threads 1 --n_threads_batch 1 \
        --chat_format chatml --interrupt_requests False --logits_all False --verbose False
"""

from __future__ import annotations

import argparse
import sys

import gguf
import numpy as np

# The canonical ChatML template: llama-cpp-python maps this exact string to its "chatml"
# format (stop at "<|im_end|>"), so the server needs no --chat_format.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = """the of and to a in is it you that he was for on are with as his they be at one have
this from or had by not word but what some we can out other were all there when up use your
how said an each she which do their time if will way about many then them write would like so
these her long make thing see him two has look more day could go come did number sound no most
people my over know water than call first who may down side been now find any new work part
take get place made live where after back little only round man year came show every good me
give our under name very through just form sentence great think say help low line differ turn
cause much mean before move right boy old too same tell does set three want air well also play
small end put home read hand port large spell add even land here must big high such follow act
why ask men change went light kind off need house picture try us again animal point mother world
near build self earth father head stand own page should country found answer school grow study
still learn plant cover food sun four between state keep eye never last let thought city tree
cross farm hard start might story saw far sea draw left late run while press close night real
life few north open seem together next white children begin got walk example ease paper group
always music those both mark often letter until mile river car feet care second book carry took
science eat room friend began idea fish mountain stop once base hear horse cut sure watch color
face wood main enough plain girl usual young ready above ever red list though feel talk bird soon
body dog family direct pose leave song measure door product black short numeral class wind
question happen complete ship area half rock order fire south problem piece told knew pass since
top whole king space heard best hour better true during hundred five remember step early hold
west ground interest reach fast verb sing listen six table travel less morning ten simple several
vowel toward war lay against pattern slow center love person money serve appear road map rain
rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark machine
note wait plan figure star box noun field rest correct able pound done beauty drive stood contain
front teach week final gave green quick develop ocean warm free minute strong special mind behind
clear tail produce fact street inch multiply nothing course stay wheel full force blue object
decide surface deep moon island foot system busy test record boat common gold possible plane
stead dry wonder laugh thousand ago ran check game shape equate miss brought heat snow tire bring
yes distant fill east paint language among""".split()

SPACE = "\u2581"  # SentencePiece's word-boundary mark: llama.cpp writes " " as this


def build_vocab() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types, ids in list order: 0 <unk>, 1 <s>, 2 </s>, 3.. bytes."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256

    pieces: dict[str, None] = {}  # an ordered set: the first spelling of a piece keeps its id
    singles = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;()"
    for ch in SPACE + singles:
        pieces[ch] = None
    for ch in singles:
        pieces[SPACE + ch] = None  # a one-letter word, or the first merge of a longer one
    for word in WORDS:
        piece = SPACE + word
        for end_chars in range(2, len(piece) + 1):  # every prefix: the merge path to it
            pieces[piece[:end_chars]] = None
    tokens += list(pieces)
    types += [gguf.TokenType.NORMAL] * len(pieces)

    # SPM merges the adjacent pair whose union has the highest score first; scoring by
    # length makes tokenisation grow the longest known piece, close to a greedy longest match.
    scores = [0.0] * (3 + 256) + [float(len(p)) for p in pieces]
    return tokens, scores, [int(t) for t in types]


def emittable(tokens: list[str], types: list[int], allow_eos: bool) -> np.ndarray:
    """Which tokens the output head lets the model sample (see the module docstring)."""
    ok = np.zeros(len(tokens), dtype=bool)
    for token_id, (text, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind == gguf.TokenType.NORMAL:
            ok[token_id] = True
        elif kind == gguf.TokenType.BYTE:
            byte = int(text[3:5], 16)
            ok[token_id] = 0x20 <= byte < 0x7F and chr(byte) != "<"  # printable ASCII
    ok[2] = allow_eos
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="path of the .gguf file to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=64, help="model width (n_embd)")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: --heads (no GQA)")
    ap.add_argument("--ff", type=int, default=None, help="feed-forward width; default 4 x embd")
    ap.add_argument("--ctx", type=int, default=2048, help="llama.context_length, tokens")
    ap.add_argument("--f16", action="store_true", help="matrices in f16 (norms stay f32)")
    ap.add_argument(
        "--allow-eos",
        action="store_true",
        help="let </s> be sampled, so streams may end before max_tokens",
    )
    args = ap.parse_args()

    n_embd, n_head = args.embd, args.heads
    n_head_kv = args.kv_heads or n_head
    n_ff = args.ff or 4 * n_embd
    if n_embd % n_head or n_head % n_head_kv or (n_embd // n_head) % 2:
        ap.error("--embd must split into --heads heads of even size; --heads into --kv-heads")
    head_dim = n_embd // n_head

    tokens, scores, types = build_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(args.seed)
    mat_dtype = np.float16 if args.f16 else np.float32

    def matrix(rows: int, cols: int) -> np.ndarray:
        # numpy (out, in) is ggml's {in, out}: the layout llama.cpp expects for every weight.
        # Scale 1/sqrt(in) keeps activations near unit size through the layers.
        return rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols)

    # Channel 0 of the residual stream is the constant bias_channel_value (set in the
    # embedding, never read by a block's input projections nor written by its output ones),
    # about 8x the other channels, so after the final RMSNorm it is a steady positive value
    # the output head can use as a per-token bias.
    bias_channel_value = 8.0
    logit_margin = 4.0  # weight on channel 0: allowed tokens +margin, the rest -margin

    w = gguf.GGUFWriter(args.out, arch="llama")
    w.add_name(f"crestline tiny random llama (seed {args.seed})")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if args.f16 else gguf.LlamaFileType.ALL_F32)
    w.add_context_length(args.ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(args.layers)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)

    w.add_tokenizer_model("llama")  # SentencePiece BPE with byte fallback
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHATML_TEMPLATE)

    def add(name: str, tensor: np.ndarray) -> None:
        # Norm weights (1-D) must stay f32 for llama.cpp; matrices take the chosen type.
        w.add_tensor(name, tensor if tensor.ndim == 1 else tensor.astype(mat_dtype))

    embd = rng.standard_normal((n_vocab, n_embd), dtype=np.float32)
    embd[:, 0] = bias_channel_value
    add("token_embd.weight", embd)

    ones = np.ones(n_embd, dtype=np.float32)
    for layer in range(args.layers):
        blk = f"blk.{layer}"
        q = matrix(n_embd, n_embd)
        k = matrix(head_dim * n_head_kv, n_embd)
        v = matrix(head_dim * n_head_kv, n_embd)
        o = matrix(n_embd, n_embd)
        gate = matrix(n_ff, n_embd)
        up = matrix(n_ff, n_embd)
        down = matrix(n_embd, n_ff)
        for m in (q, k, v, gate, up):
            m[:, 0] = 0.0  # blocks do not read the bias channel...
        for m in (o, down):
            m[0, :] = 0.0  # ...nor write it, so it stays constant to the output head
        add(f"{blk}.attn_norm.weight", ones)
        add(f"{blk}.attn_q.weight", q)
        add(f"{blk}.attn_k.weight", k)
        add(f"{blk}.attn_v.weight", v)
        add(f"{blk}.attn_output.weight", o)
        add(f"{blk}.ffn_norm.weight", ones)
        add(f"{blk}.ffn_gate.weight", gate)
        add(f"{blk}.ffn_up.weight", up)
        add(f"{blk}.ffn_down.weight", down)

    add("output_norm.weight", ones)
    out = matrix(n_vocab, n_embd)
    out[:, 0] = np.where(emittable(tokens, types, args.allow_eos), logit_margin, -logit_margin)
    add("output.weight", out)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(
        f"{args.out}: {n_vocab} tokens, {args.layers} layers, n_embd {n_embd}, "
        f"{'f16' if args.f16 else 'f32'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
