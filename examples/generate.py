"""Text generation end to end: a tiny llama model is written on the fly with trueno's GGUF
writer (random weights, a 64-piece SentencePiece vocabulary), loaded and sampled greedily.
``--model smollm2`` uses the real SmolLM2-135M instead when its package is installed.

Run: python examples/generate.py [--model tiny|smollm2] [--tokens N]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from trueno.gguf.constants import Keys, TokenType
from trueno.gguf.writer import write_gguf
from trueno.llm import Model
from trueno.llm.packaged import smollm2_path

DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 32, 48, 2, 4, 2, 8
PIECES = (
    ["<unk>", "<s>", "</s>"]
    + [
        "\u2581" + w
        for w in (
            "the",
            "a",
            "cat",
            "dog",
            "sat",
            "on",
            "mat",
            "ran",
            "to",
            "and",
            "is",
            "big",
            "red",
            "sun",
            "hello",
            "world",
        )
    ]
    + list("abcdefghijklmnopqrstuvwxyz")
    + list(".,!?'-")
    + ["\u2581"] * 0
)


def tiny_model(path: Path, seed: int = 0) -> Path:
    """Write a 2-layer llama with random weights and a tiny SPM vocabulary to ``path``."""
    pieces = PIECES + [f"<x{i}>" for i in range(64 - len(PIECES))]
    vocab = len(pieces)
    rng = np.random.default_rng(seed)

    def mat(rows, cols):  # GGUF shape order: (out, in) as a numpy (rows, cols) array
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    tensors = {
        "token_embd.weight": rng.standard_normal((vocab, DIM)).astype(np.float32),
        "output_norm.weight": norm(DIM),
        "output.weight": mat(vocab, DIM),
    }
    for i in range(LAYERS):
        tensors.update(
            {
                f"blk.{i}.attn_norm.weight": norm(DIM),
                f"blk.{i}.attn_q.weight": mat(q, DIM),
                f"blk.{i}.attn_k.weight": mat(kv, DIM),
                f"blk.{i}.attn_v.weight": mat(kv, DIM),
                f"blk.{i}.attn_output.weight": mat(DIM, q),
                f"blk.{i}.ffn_norm.weight": norm(DIM),
                f"blk.{i}.ffn_gate.weight": mat(HIDDEN, DIM),
                f"blk.{i}.ffn_up.weight": mat(HIDDEN, DIM),
                f"blk.{i}.ffn_down.weight": mat(DIM, HIDDEN),
            }
        )

    def k(key):
        return Keys.arch(key, "llama")

    metadata = {
        Keys.ARCHITECTURE: "llama",
        k(Keys.CONTEXT_LENGTH): 128,
        k(Keys.EMBEDDING_LENGTH): DIM,
        k(Keys.BLOCK_COUNT): LAYERS,
        k(Keys.FEED_FORWARD_LENGTH): HIDDEN,
        k(Keys.HEAD_COUNT): HEADS,
        k(Keys.HEAD_COUNT_KV): KV_HEADS,
        k(Keys.LAYERNORM_RMS_EPS): 1e-5,
        k(Keys.ROPE_FREQ_BASE): 10000.0,
        k(Keys.ROPE_DIMENSION_COUNT): HEAD_DIM,
        Keys.TOKENIZER_MODEL: "llama",
        Keys.TOKENS: pieces,
        Keys.SCORES: [0.0, 0.0, 0.0] + [-float(i) for i in range(vocab - 3)],
        Keys.TOKEN_TYPE: [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
        + [TokenType.NORMAL] * (vocab - 3),
        Keys.BOS_ID: 1,
        Keys.EOS_ID: 2,
    }
    write_gguf(path, metadata, tensors)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--prompt", default="the cat sat on the")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = smollm2_path() if args.model == "smollm2" else None
        if args.model == "smollm2" and path is None:
            print("SmolLM2 is not installed; using the tiny model", file=sys.stderr)
        path = path or tiny_model(Path(tmp, "tiny-llama.gguf"))
        model = Model.load(path, ctx_size=256)
        gen = model.generate(args.prompt, max_tokens=args.tokens, temperature=0.0, seed=0)
        print(args.prompt, end="", flush=True)
        for piece in gen:
            print(piece, end="", flush=True)
        print()
        s = gen.stats
        print(
            f"{s.n_prompt} prompt tokens, {s.n_generated} generated "
            f"({s.decode_tok_s:.1f} tok/s), stop: {s.stop_reason}"
        )
        assert s.n_generated >= 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
