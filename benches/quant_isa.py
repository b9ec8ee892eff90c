"""The quantized kernels at each ISA level this host runs, side by side in one run.

For each fused type: ``PreparedWeight.matvec`` on a weight that stays in L2/L3 (compute-bound:
the instruction count decides), the same at DRAM size (bandwidth-bound), the B=8 multi-vector
matvec at DRAM size, and the int8 prefill matmul of T tokens on a Llama-3.2-1B-shaped layer
(2048x2048), each level's prepared copy timed in turn (interleaved rounds, best of ``--calls``
per round, median of rounds). Prints one markdown table per measure with the time of every
level and its ratio to the AVX2 level.

    python benches/quant_isa.py [--threads 2] [--rounds 5] [--types Q4_0,...] [--tokens 128]
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--types", default="Q4_0,Q4_1,Q5_0,Q5_1,Q8_0,Q4_K,Q5_K,Q6_K")
    ap.add_argument("--tokens", type=int, default=128, help="T of the int8 matmul")
    ap.add_argument("--dram-rows", type=int, default=262144)
    ap.add_argument("--skip", default="", help="measures to leave out: l2,dram,b8,matmul")
    return ap.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import statistics  # noqa: E402

import numpy as np  # noqa: E402


def interleaved(fns: dict, rounds: int, calls: int) -> dict:
    """name -> median over rounds of the best-of-``calls`` time, the order rotating."""
    from quant_batched import best_time

    names = list(fns)
    times: dict = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            times[n].append(best_time(fns[n], calls))
    return {n: statistics.median(v) for n, v in times.items()}


def main(args) -> int:
    import numba
    from quant_ops import weight_blocks

    from trueno.quant import int8mm, kernels, prepare

    numba.set_num_threads(args.threads)
    levels = [lvl for lvl in kernels.host_levels() if lvl != "portable"]
    rng = np.random.default_rng(0)
    skip = set(args.skip.split(","))
    print(f"threads={args.threads}  host levels: {', '.join(levels)}  cpu: {_cpu()}")
    print(
        f"{args.rounds} rounds x best of {args.calls} calls, median of rounds; "
        "ratio = AVX2 time / level time\n"
    )
    measures = [
        ("l2", "matvec, weight in L2/L3 (1024 x 2048)", 1024, 2048, "matvec"),
        ("dram", f"matvec at DRAM size ({args.dram_rows} rows)", args.dram_rows, None, "matvec"),
        ("b8", f"B=8 matvecs at DRAM size ({args.dram_rows} rows)", args.dram_rows, None, "b8"),
        ("matmul", f"int8 matmul, T={args.tokens}, 2048 x 2048", 2048, 2048, "matmul"),
    ]
    for key, title, rows, cols, how in measures:
        if key in skip:
            continue
        print(f"### {title}\n")
        print(
            "| type | "
            + " | ".join(f"{lvl} ms" for lvl in levels)
            + " | "
            + " | ".join(f"{lvl}/avx2" for lvl in levels if lvl != "avx2")
            + " |"
        )
        print("|---|" + "---:|" * (2 * len(levels) - 1))
        for t in args.types.split(","):
            c = cols or (768 if t.endswith("_K") else 640)
            blocks = weight_blocks(t, rows, c, rng)
            fns = {}
            for lvl in levels:
                p = prepare(blocks, t, (rows, c), isa=lvl)
                if how == "matvec":
                    x, out = rng.standard_normal(c).astype(np.float32), np.empty(rows, np.float32)
                    fns[lvl] = lambda p=p, x=x, out=out: p.matvec_into(x, out)
                elif how == "b8":
                    x, out = (
                        rng.standard_normal((8, c)).astype(np.float32),
                        np.empty((8, rows), np.float32),
                    )
                    fns[lvl] = lambda p=p, x=x, out=out: p.matvecs_into(x, out)
                else:
                    x = rng.standard_normal((args.tokens, c)).astype(np.float32)
                    out = np.empty((args.tokens, rows), np.float32)
                    if not int8mm.matmul_into(p, x, out):
                        fns = {}
                        break
                    fns[lvl] = lambda p=p, x=x, out=out: int8mm.matmul_into(p, x, out)
                fns[lvl]()  # compile / warm
            if not fns:
                print(f"| {t} | (no int8 matmul) |")
                continue
            med = interleaved(fns, args.rounds, args.calls)
            base = med.get("avx2")
            ratios = [f"{base / med[lvl]:.2f}" for lvl in levels if lvl != "avx2"]
            print(
                f"| {t} | "
                + " | ".join(f"{med[lvl] * 1e3:.3f}" for lvl in levels)
                + " | "
                + " | ".join(ratios)
                + " |"
            )
        print()
    return 0


def _cpu() -> str:
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_name()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(ARGS))
