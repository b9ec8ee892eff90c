"""B-vector quantized matvec at DRAM size: time of B vectors per weight read against B = 1.

For each GGML type: ``PreparedWeight.matvec_into`` (B = 1) and ``matvecs_into`` with B
vectors (each weight row read from memory once for all B), the two timed interleaved in the
same rounds (best of a few calls per round, median of rounds), and their ratio. Issue 11's
target: B = 8 takes <= 2.5x the time of B = 1 for Q4_0, Q4_1, Q4_K and Q8_0. Prints a
markdown table.

    python benches/quant_batched.py [--threads 2] [--batch 8] [--rounds 7] [--types Q4_0,...]
                                    [--rows 262144 | --min-mb 1100]

``--rows`` 262144 (the default) is DRAM size only where the last-level cache is small: a
262144 x 640 Q4_0 weight is 94 MB, which a 300 MiB L3 (Emerald Rapids hosts) holds.
``--min-mb``: each type's row count instead the least multiple of 1024 rows whose weight
takes at least that many MB (e.g. 1100: past any such L3; B = 1 then streams from memory).

``--cpu``: one thread, timed by this thread's CPU time (time.thread_time) instead of the
clock: the instruction cost of each side, which a loaded host leaves nearly intact while its
wall-clock times (and their ratio) are mostly waiting. ``--isa`` forces a level.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="numba and BLAS threads")
    ap.add_argument("--batch", type=int, default=8, help="vectors per weight read")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=3, help="calls per round (best taken)")
    ap.add_argument("--rows", type=int, default=262144)
    ap.add_argument("--min-mb", type=float, default=0, help="rows per type: weight >= this")
    ap.add_argument("--types", default="Q4_0,Q4_1,Q4_K,Q8_0")
    ap.add_argument("--cpu", action="store_true", help="1 thread, CPU time (see above)")
    ap.add_argument("--isa", default=None, help="ISA level (default: the chosen one)")
    args = ap.parse_args(argv)
    if args.cpu:
        args.threads = 1
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # BLAS reads its thread count when numpy loads
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

K_COLS, COLS = 768, 640  # the DRAM shapes of benches/quant_ops.py (262144 rows)


def best_time(fn, calls: int, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(calls):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def interleaved(one, many, rounds: int, calls: int, clock=time.perf_counter):
    """Median over rounds of the best-of-``calls`` time of each, the order alternating."""
    times: tuple[list, list] = ([], [])
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for i in order:
            times[i].append(best_time((one, many)[i], calls, clock))
    return statistics.median(times[0]), statistics.median(times[1])


def rows_for(ggml_type: str, cols: int, min_mb: float) -> int:
    """The least multiple of 1024 rows of ``cols`` whose ``ggml_type`` weight takes >= min_mb
    MB (quant_ops.weight_blocks tiles 1024 quantized rows)."""
    from trueno.gguf.constants import GGMLType
    from trueno.quant.kernels import RECORDS

    rec = RECORDS[GGMLType[ggml_type]]
    row_bytes = cols // rec.layout[0] * rec.block_bytes
    return max(1, -(-int(min_mb * 1e6) // (row_bytes * 1024))) * 1024


def main(args) -> int:
    import numba
    from quant_ops import weight_blocks

    from trueno.quant import kernels, prepare

    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    B = args.batch
    level = kernels.check_level(args.isa) if args.isa else kernels.chosen_level()
    clock = time.thread_time if args.cpu else time.perf_counter
    rows_note = f"weight >= {args.min_mb:g} MB" if args.min_mb else f"rows={args.rows}"
    lines = [
        f"threads={args.threads}  ISA level: {level}  {rows_note}  B={B}  "
        f"{args.rounds} rounds x best of {args.calls}, median of rounds"
        + ("  (CPU time of this thread)" if args.cpu else ""),
        "",
        f"| type | shape | MB | ms B=1 | ms B={B} | B={B} / B=1 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for t in args.types.split(","):
        cols = K_COLS if t.endswith("_K") else COLS
        rows = rows_for(t, cols, args.min_mb) if args.min_mb else args.rows
        blocks = weight_blocks(t, rows, cols, rng)
        p = prepare(blocks, t, (rows, cols), isa=level)
        del blocks
        x1 = rng.standard_normal(cols).astype(np.float32)
        xs = rng.standard_normal((B, cols)).astype(np.float32)
        o1 = np.empty(rows, np.float32)
        ob = np.empty((B, rows), np.float32)
        assert p.matvecs_into(xs, ob), f"{t}: no B-vector kernel"
        p.matvec_into(x1, o1)
        a, b = interleaved(
            lambda p=p, x1=x1, o1=o1: p.matvec_into(x1, o1),
            lambda p=p, xs=xs, ob=ob: p.matvecs_into(xs, ob),
            args.rounds,
            args.calls,
            clock,
        )
        lines.append(
            f"| {t} | {rows}x{cols} | {p.nbytes / 1e6:.0f} | {a * 1e3:.3f} | "
            f"{b * 1e3:.3f} | {b / a:.2f} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(ARGS))
