"""Quantized matvec bandwidth: weight bytes streamed per second, against float32 BLAS sgemv.

For each GGML type and shape: the median time of ``PreparedWeight.matvec`` (int8-quantized
activations included), the weight GB/s it implies (GGML block bytes / time) and its ratio to
the read bandwidth of numpy ``W @ x`` on a float32 W of 512 MiB (at least twice the last-level
cache) measured in the same run with the same thread count. The 262144-row weights run as a
rotation of copies totalling twice the last-level cache, one copy per call, so none is served
from the cache (a 300 MiB L3 holds a 262144 x 640 Q8_0 matrix whole). Prints a markdown table.

    python benches/quant_ops.py [--quick] [--threads 2] [--portable] [--stat median|min]
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and types")
    ap.add_argument("--threads", type=int, default=2, help="numba and BLAS threads")
    ap.add_argument("--portable", action="store_true", help="also time the portable kernels")
    ap.add_argument(
        "--stat",
        choices=["median", "min"],
        default="median",
        help="statistic over repetitions (min resists a busy machine)",
    )
    return ap.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # BLAS reads its thread count when numpy loads
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import itertools  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
QUICK_TYPES = ["F16", "Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"]
SHAPES = [(4096, 4096), (262144, 640)]
K_COLS = 768  # K-quants need rows of whole 256-blocks: 262144 x 768 instead of x 640
SGEMV_SHAPE = (32768, 4096)  # 512 MiB of float32 (more rows where the cache is larger)
DRAM_ROWS = 262144  # the shapes with this many rows are the DRAM test: run as a rotation


STAT = np.median


def median_time(fn, reps: int) -> float:
    """The run's statistic (median by default) of ``reps`` timed calls after one warm-up."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(STAT(times))


def sgemv_shape() -> tuple[int, int]:
    """SGEMV_SHAPE, with rows enough for twice the last-level cache."""
    from _common import dram_bytes

    rows, cols = SGEMV_SHAPE
    return max(rows, -(-dram_bytes(rows * cols * 4) // (cols * 4))), cols


def sgemv_bandwidth(reps: int) -> float:
    w = np.full(sgemv_shape(), 0.5, dtype=np.float32)
    x = np.ones(SGEMV_SHAPE[1], dtype=np.float32)
    t = median_time(lambda: w @ x, reps)
    return w.nbytes / t / 1e9


def rotation(nbytes: int) -> int:
    """Copies of an ``nbytes`` weight that together overflow the last-level cache twice."""
    from _common import dram_bytes

    return max(1, -(-dram_bytes(nbytes) // nbytes))


def weight_blocks(ggml_type: str, rows: int, cols: int, rng) -> np.ndarray:
    """Real quantized rows (1024 of them) tiled to ``rows``: realistic bytes, quick to make."""
    from trueno.quant import quantize

    base = quantize(rng.standard_normal((min(rows, 1024), cols)).astype(np.float32), ggml_type)
    return np.ascontiguousarray(np.tile(base, (rows // base.shape[0], 1)))


def main(args) -> int:
    import numba

    from trueno.quant import kernels, prepare

    global STAT
    STAT = np.min if args.stat == "min" else np.median
    numba.set_num_threads(args.threads)
    reps = 5 if args.quick else 20
    types = QUICK_TYPES if args.quick else TYPES
    rng = np.random.default_rng(0)
    bw_start = sgemv_bandwidth(3 if args.quick else 7)
    results = []
    for rows, cols in SHAPES:
        for t in types:
            if t == "F32" and rows > 4096:
                continue  # the same kernel as the sgemv baseline
            c = K_COLS if (t.endswith("_K") and cols % 256) else cols
            blocks = weight_blocks(t, rows, c, rng)
            x = rng.standard_normal(c).astype(np.float32)
            copies = rotation(blocks.nbytes) if rows >= DRAM_ROWS else 1
            for force in [None, False] if args.portable else [None]:
                ps = [prepare(blocks.copy(), t, (rows, c), simd=force) for _ in range(copies)]
                out = np.empty(rows, dtype=np.float32)
                turn = itertools.cycle(ps)
                dt = median_time(
                    lambda turn=turn, x=x, out=out: next(turn).matvec(x, out=out), reps
                )
                results.append((t, f"{rows}x{c}", ps[0].backend, dt, blocks.nbytes / dt / 1e9))
                del ps, turn
            del blocks
    bw_end = sgemv_bandwidth(3 if args.quick else 7)
    bw = max(bw_start, bw_end)  # the better sgemv reading, so ratios err on the low side
    lines = [
        f"threads={args.threads}  stat={args.stat}  ISA level: {kernels.chosen_level()}  "
        f"sgemv (numpy W @ x, f32 W {sgemv_shape()[0]}x{SGEMV_SHAPE[1]}, "
        f"{sgemv_shape()[0] * SGEMV_SHAPE[1] * 4 >> 20} MiB) at start / end: "
        f"{bw_start:.1f} / {bw_end:.1f} GB/s; ratios use {bw:.1f}",
        "",
        "| type | shape | backend | ms / matvec | weight GB/s | vs sgemv |",
        "|---|---|---|---:|---:|---:|",
    ]
    for t, shape, backend, dt, gbs in results:
        lines.append(f"| {t} | {shape} | {backend} | {dt * 1e3:.3f} | {gbs:.1f} | {gbs / bw:.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(ARGS))
