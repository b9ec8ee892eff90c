"""Mixture-of-experts decode: a tiny Mixtral-style stand-in (llama + 8 experts, top-2, Q4_K)
against a dense llama with the same active parameters (FFN inner size = 2 experts' sizes),
both written here with synthetic Q4_K blocks. Decode tok/s beside each one's bandwidth floor:
the bytes one token reads (attention, router, output head, and for the MoE only the experts
its tokens were routed to, counted per token) over the sgemv read bandwidth of this run.
Prefill tok/s too (the MoE groups a chunk's tokens by expert). The two models are timed in
interleaved rounds (best of the calls in a round, median of rounds): the host is shared.

    python benches/moe.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, set_threads, sgemv_bandwidth_gbs  # noqa: E402

DIM, LAYERS, HEADS, VOCAB = 1024, 4, 8, 512
EXPERTS, USED, EXPERT_FF = 8, 2, 1024
N_PROMPT, N_PREFILL = 8, 128


def q4_k_blocks(rng, shape) -> np.ndarray:
    """Valid Q4_K blocks for a float tensor of ``shape`` (last dim a multiple of 256): random
    nibbles and scales, small f16 super-block scales (speed does not depend on the values)."""
    n_blocks = int(np.prod(shape[:-1])) * (shape[-1] // 256)
    blocks = rng.integers(0, 256, (n_blocks, 144), dtype=np.uint8)
    blocks[:, 0:2] = np.frombuffer(np.float16(2e-4).tobytes(), np.uint8)  # d
    blocks[:, 2:4] = np.frombuffer(np.float16(1e-4).tobytes(), np.uint8)  # dmin
    return blocks.reshape(*shape[:-1], shape[-1] // 256 * 144)


def write_model(path: Path, moe: bool, seed: int = 0) -> Path:
    from trueno.gguf.constants import GGMLType, Keys
    from trueno.gguf.writer import write_gguf

    rng = np.random.default_rng(seed)
    q4k = GGMLType.Q4_K

    def mat(*shape):
        return (q4_k_blocks(rng, shape), q4k, shape)

    def k(key):
        return Keys.arch(key, "llama")

    ff = EXPERT_FF if moe else USED * EXPERT_FF
    md = {
        Keys.ARCHITECTURE: "llama",
        k(Keys.CONTEXT_LENGTH): 512,
        k(Keys.EMBEDDING_LENGTH): DIM,
        k(Keys.BLOCK_COUNT): LAYERS,
        k(Keys.FEED_FORWARD_LENGTH): ff,
        k(Keys.HEAD_COUNT): HEADS,
        k(Keys.HEAD_COUNT_KV): HEADS,
        k(Keys.LAYERNORM_RMS_EPS): 1e-5,
    }
    if moe:
        md[k(Keys.EXPERT_COUNT)] = EXPERTS
        md[k(Keys.EXPERT_USED_COUNT)] = USED
    ones = np.ones(DIM, np.float32)
    tensors = {
        "token_embd.weight": rng.standard_normal((VOCAB, DIM)).astype(np.float32),
        "output_norm.weight": ones,
        "output.weight": mat(VOCAB, DIM),
    }
    for i in range(LAYERS):
        p = f"blk.{i}."
        tensors.update({p + "attn_norm.weight": ones, p + "ffn_norm.weight": ones})
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensors[p + name + ".weight"] = mat(DIM, DIM)
        if moe:  # the router stays F32, as llama.cpp's quantizer keeps it
            router = rng.standard_normal((EXPERTS, DIM)) / np.sqrt(DIM)
            tensors[p + "ffn_gate_inp.weight"] = router.astype(np.float32)
            tensors[p + "ffn_gate_exps.weight"] = mat(EXPERTS, ff, DIM)
            tensors[p + "ffn_up_exps.weight"] = mat(EXPERTS, ff, DIM)
            tensors[p + "ffn_down_exps.weight"] = mat(EXPERTS, DIM, ff)
        else:
            tensors[p + "ffn_gate.weight"] = mat(ff, DIM)
            tensors[p + "ffn_up.weight"] = mat(ff, DIM)
            tensors[p + "ffn_down.weight"] = mat(DIM, ff)
    write_gguf(path, md, tensors)
    return path


class Side:
    """One model: decode and prefill timings, and the weight bytes its tokens read."""

    def __init__(self, path: Path, seed: int) -> None:
        from trueno.llm import Model

        self.model = Model.load(path, ctx_size=512, cache_type="f32")
        self.model.warmup()
        self.tokens = np.random.default_rng(seed).integers(0, VOCAB, 512).tolist()

    def token_bytes(self) -> int:
        """Weight bytes the last decoded token read: every used matrix of a dense layer; of a
        MoE layer its attention, router and the experts it was routed to."""
        w = self.model.weights
        total = w.output.nbytes
        for lw in w.layers:
            if lw.moe is None:
                total += sum(m.nbytes for m in lw.used_matrices())
                continue
            moe = lw.moe
            experts = {id(m) for m in moe.matrices()}
            attn = [m for m in lw.used_matrices() if id(m) not in experts]
            total += sum(m.nbytes for m in attn) + moe.router.nbytes
            total += sum(moe.expert_nbytes(e) for e in moe.last_experts[0].tolist())
        return total

    def read_per_token(self, n: int) -> float:
        """Mean weight bytes per token of the decode that :meth:`decode` times (untimed: the
        tokens, hence the routes, are the same in every call)."""
        m = self.model
        m.reset()
        m.prefill(self.tokens[:N_PROMPT])
        read = []
        for tok in self.tokens[N_PROMPT : N_PROMPT + n]:
            m.decode(tok)
            read.append(self.token_bytes())
        return statistics.mean(read)

    def decode(self, n: int) -> float:
        m = self.model
        m.reset()
        m.prefill(self.tokens[:N_PROMPT])
        t = time.perf_counter()
        for tok in self.tokens[N_PROMPT : N_PROMPT + n]:
            m.decode(tok)
        return n / (time.perf_counter() - t)

    def prefill(self, n: int) -> float:
        self.model.reset()
        t = time.perf_counter()
        self.model.prefill(self.tokens[:n])
        return n / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one round, 16 decode tokens")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    n_decode, rounds, calls = (16, 1, 1) if args.quick else (32, 3, 2)
    bw = sgemv_bandwidth_gbs(256 << 20 if args.quick else 512 << 20)
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            f"MoE {EXPERTS}x{EXPERT_FF}, top-{USED}": Side(
                write_model(Path(tmp) / "moe.gguf", moe=True), 1
            ),
            f"dense FFN {USED * EXPERT_FF}": Side(
                write_model(Path(tmp) / "dense.gguf", moe=False), 1
            ),
        }
        decode = {s: [] for s in sides}
        prefill = {s: [] for s in sides}
        for _ in range(rounds):  # interleaved: each round runs both sides
            for name, side in sides.items():
                decode[name].append(max(side.decode(n_decode) for _ in range(calls)))
                prefill[name].append(max(side.prefill(N_PREFILL) for _ in range(calls)))
        rows = []
        for name, side in sides.items():
            tok_s = statistics.median(decode[name])
            per_token = side.read_per_token(n_decode)
            floor = bw * 1e9 / per_token
            rows.append(
                [
                    name,
                    f"{side.model.weights.nbytes / 2**20:.1f}",
                    f"{per_token / 2**20:.2f}",
                    f"{tok_s:.1f}",
                    f"{floor:.0f}",
                    f"{100 * tok_s / floor:.0f}%",
                    f"{statistics.median(prefill[name]):.0f}",
                ]
            )
    print(
        f"threads={args.threads}  sgemv read bandwidth {bw:.1f} GB/s  dim {DIM}, {LAYERS} layers, "
        f"Q4_K; decode {n_decode} tokens after {N_PROMPT}, prefill {N_PREFILL} tokens; "
        f"median of {rounds} interleaved rounds (best of {calls} calls each)"
    )
    print_table(
        [
            "model",
            "weights MiB",
            "read per token MiB",
            "decode tok/s",
            "floor tok/s",
            "of floor",
            "prefill tok/s",
        ],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
