"""Decode's matvec on weights re-laid in groups of 16 rows (trueno.quant.grouped) against the
layout each type has without it (the 32-weight types: paired, relayout.py; the K-quants: the
GGML blocks), the same quantized blocks, interleaved in one run.

Each case is a decode's worth of matrices called in turn, as a token calls them:

- ``1B layers``: Llama-3.2-1B's layer shapes (16 layers of 2048 x 2048 q, 512 x 2048 k and v,
  2048 x 2048 o, 8192 x 2048 gate and up, 2048 x 8192 down; 547 MB of Q4_0: DRAM here);
- ``SmolLM2 layers``: SmolLM2-135M's (30 layers of 960 x 576 qkv, 576 x 576 o, 3072 x 576
  gate|up, 576 x 1536 down);
- ``SmolLM2 head``, ``gemma3 head``: 49152 x 576 and 262144 x 640 (Q8_0 in their files).

Random weights (the speed of a matvec does not depend on them). GB/s counts the weight bytes
read per call; the BLAS sgemv probe of the same run is the DRAM reference. Best of ``--calls``
per round, median of ``--rounds``, the two sides alternating.

``--decode GGUF ...``: end to end instead, per model: decode tok/s (48 tokens after a short
prompt, best of 3) and prefill tok/s of 128 tokens, each round one process with the grouped
layout off and one with it on, alternating; medians of the rounds.

    python benches/grouped_matvec.py [--threads 2] [--rounds 7] [--decode GGUF ...]
                                     [--types Q4_0,Q4_1,Q5_0,Q5_1,Q8_0,Q4_K,Q5_K,Q6_K]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--types", default="Q4_0,Q4_1,Q5_0,Q5_1,Q8_0,Q4_K,Q5_K,Q6_K")
    ap.add_argument("--cases", default="1B layers,SmolLM2 layers,SmolLM2 head,gemma3 head")
    ap.add_argument("--decode", nargs="+", default=None, metavar="GGUF", help="end to end")
    ap.add_argument("--side", choices=("ungrouped", "grouped"), help=argparse.SUPPRESS)
    return ap.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # BLAS reads its thread count when numpy loads
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    best_decode_tok_s,
    best_prefill_tok_s,
    print_table,
    set_threads,
    sgemv_bandwidth_gbs,
)

CASES = {
    "1B layers": [
        (2048, 2048),
        (512, 2048),
        (512, 2048),
        (2048, 2048),
        (8192, 2048),
        (8192, 2048),
        (2048, 8192),
    ]
    * 16,  # fmt: skip
    "SmolLM2 layers": [(960, 576), (576, 576), (3072, 576), (576, 1536)] * 30,
    "SmolLM2 head": [(49152, 576)],
    "gemma3 head": [(262144, 640)],
}


def weights(name: str, shapes, rng):
    """(grouped, ungrouped, out) per matrix, from the same random blocks; None when the case's
    columns are not whole blocks of the type."""
    from trueno.quant import api, grouped
    from trueno.quant.prepared import PreparedWeight

    grouped.SLOWER_HERE = ()  # both kernels of every type, those this host leaves ungrouped too
    block = grouped.ACT_BLOCK[name]  # the super-block of the K-quants, 32 for the rest
    if any(cols % block for _, cols in shapes):
        return None
    out = []
    for rows, cols in shapes:
        # quantize one 1024-row slab and tile it: random weights, quick to make
        slab = api.quantize(rng.standard_normal((min(rows, 1024), cols)).astype(np.float32), name)
        blocks = np.tile(slab, (-(-rows // slab.shape[0]), 1))[:rows]
        g = PreparedWeight(blocks, name, (rows, cols))
        grouped.ENABLED = False
        try:
            p = PreparedWeight(blocks, name, (rows, cols))
        finally:
            grouped.ENABLED = True
        assert g.grouped and not p.grouped, (name, rows, cols)
        out.append((g, p, np.empty(rows, np.float32)))
    return out


PROMPT = "Write a long story about a cat who learns to fly."


def decode_side(path: str, side: str) -> None:
    """One process's measurement (``--side``): prints decode and prefill tok/s."""
    from trueno.quant import grouped

    grouped.ENABLED = side == "grouped"
    from trueno.llm import Model

    model = Model.load(path, ctx_size=1024)
    model.warmup()
    ids = model.tokenizer.encode(PROMPT, add_special=True, parse_special=True)
    print(f"{best_decode_tok_s(model, ids, 48)} {best_prefill_tok_s(model, ids)}")


def decode_table(args) -> int:
    import statistics
    import subprocess
    from pathlib import Path

    rows = []
    for path in args.decode:
        runs: dict = {"ungrouped": [], "grouped": []}
        for r in range(args.rounds):
            for side in ("ungrouped", "grouped") if r % 2 == 0 else ("grouped", "ungrouped"):
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--side", side,
                       "--decode", path]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                runs[side].append([float(v) for v in out.split()[-2:]])
        med = {k: [statistics.median(x[i] for x in v) for i in (0, 1)] for k, v in runs.items()}
        (dp, pp), (dg, pg) = med["ungrouped"], med["grouped"]
        rows.append([Path(path).name, f"{dp:.1f}", f"{dg:.1f}", f"{dg / dp:.2f}", f"{pp:.0f}",
                     f"{pg:.0f}", f"{pg / pp:.2f}"])  # fmt: skip
    print(f"{args.threads} threads, {args.rounds} rounds (one process per side and round)")
    print_table(["model", "decode ungrouped", "grouped", "ratio", "pp128 ungrouped", "grouped",
                 "ratio"], rows)  # fmt: skip
    return 0


def main() -> int:
    args = ARGS or parse_args()
    set_threads(args.threads)
    if args.side:
        decode_side(args.decode[0], args.side)
        return 0
    if args.decode:
        return decode_table(args)
    from trueno.quant import grouped
    from trueno.quant.kernels import host_levels

    if "avx512" not in host_levels():
        print("skip: the grouped layout runs at the avx512 level, which this host lacks")
        return 0
    import statistics
    import time

    rng = np.random.default_rng(0)
    probe = sgemv_bandwidth_gbs()
    rows = []
    for name in args.types.split(","):
        if name not in grouped.TYPES:
            raise SystemExit(f"{name}: not a grouped type ({', '.join(grouped.TYPES)})")
        for case in args.cases.split(","):
            mats = weights(name, CASES[case], rng)
            if mats is None:
                continue
            xs = {
                c: rng.standard_normal(c).astype(np.float32) for c in {m[0].shape[1] for m in mats}
            }

            def run(side, mats=mats, xs=xs):
                for m in mats:
                    m[side].matvec_into(xs[m[0].shape[1]], m[2])

            run(0), run(1)
            times: tuple[list, list] = ([], [])
            for r in range(args.rounds):
                for side in (0, 1) if r % 2 == 0 else (1, 0):
                    best = float("inf")
                    for _ in range(args.calls):
                        t0 = time.perf_counter()
                        run(side)
                        best = min(best, time.perf_counter() - t0)
                    times[side].append(best)
            tg, tp = statistics.median(times[0]), statistics.median(times[1])
            nbytes = sum(m[0].nbytes for m in mats)
            rows.append([name, case, f"{nbytes / 1e6:.0f}", f"{tp * 1e3:.2f}",
                         f"{nbytes / tp / 1e9:.1f}", f"{tg * 1e3:.2f}",
                         f"{nbytes / tg / 1e9:.1f}", f"{tp / tg:.2f}"])  # fmt: skip
            del mats
    print(f"{args.threads} threads; BLAS sgemv probe {probe:.1f} GB/s")
    print_table(["type", "case", "MB", "ungrouped ms", "GB/s", "grouped ms", "GB/s", "speedup"],
                rows)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
