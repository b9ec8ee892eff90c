"""Matrix ops: numpy vs trueno (AUTO dispatch), float32.

    python benches/matrix_ops.py [--quick]

matmul (square N = 64 .. 2048, GFLOP/s), matvec (N x N with N*N = 1e2 .. 1e7 elements, GB/s of
the matrix read, and % of the sgemv DRAM bandwidth measured in the same run), batched matmul
(attention shapes), transpose, convolve2d (3x3 and 5x5 kernels)."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import compare_times, fmt_time, print_table, sgemv_bandwidth_gbs  # noqa: E402

import trueno  # noqa: E402
from trueno.backends import numpy_backend as ref  # noqa: E402


def row(name, size, t_np, t_tr, rate, unit, extra=""):
    return [
        name,
        size,
        fmt_time(t_np),
        fmt_time(t_tr),
        f"{t_np / t_tr:.2f}",
        f"{rate:.1f} {unit}",
        extra,
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = p.parse_args(argv)
    repeat = 3 if args.quick else 7
    trueno.warmup(progress=False)
    bw = sgemv_bandwidth_gbs()
    print(f"DRAM read bandwidth (sgemv, {os.cpu_count()} CPUs): {bw:.1f} GB/s\n")
    rng = np.random.default_rng(0)
    rows = []
    for n in [64, 256, 1024] if args.quick else [64, 128, 256, 512, 1024, 2048]:
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        t_np, t_tr = compare_times(
            lambda a=a, b=b: a @ b, lambda a=a, b=b: trueno.matmul(a, b), repeat
        )
        rows.append(row("matmul", f"{n}x{n}", t_np, t_tr, 2 * n**3 / t_tr / 1e9, "GFLOP/s"))
    for e in range(2, 7 if args.quick else 8):
        n = int(round(10 ** (e / 2)))
        a = rng.standard_normal((n, n)).astype(np.float32)
        x = rng.standard_normal(n).astype(np.float32)
        t_np, t_tr = compare_times(
            lambda a=a, x=x: a @ x, lambda a=a, x=x: trueno.matvec(a, x), repeat
        )
        gbs = a.nbytes / t_tr / 1e9
        rows.append(row("matvec", f"{n}x{n}", t_np, t_tr, gbs, "GB/s", f"{100 * gbs / bw:.0f}%"))
    for shape_a, shape_b in [((8, 128, 64), (8, 64, 128)), ((1, 12, 128, 64), (1, 12, 64, 128))]:
        a = rng.standard_normal(shape_a).astype(np.float32)
        b = rng.standard_normal(shape_b).astype(np.float32)
        t_np, t_tr = compare_times(
            lambda a=a, b=b: np.matmul(a, b), lambda a=a, b=b: trueno.batched_matmul(a, b), repeat
        )
        flops = 2 * np.prod(shape_a) * shape_b[-1]
        rows.append(
            row(
                "batched_matmul",
                "x".join(map(str, shape_a)),
                t_np,
                t_tr,
                flops / t_tr / 1e9,
                "GFLOP/s",
            )
        )
    for n in [256, 1024] if args.quick else [256, 1024, 2048]:
        a = rng.standard_normal((n, n)).astype(np.float32)
        t_np, t_tr = compare_times(
            lambda a=a: ref.transpose(a), lambda a=a: trueno.transpose(a), repeat
        )
        rows.append(row("transpose", f"{n}x{n}", t_np, t_tr, 2 * a.nbytes / t_tr / 1e9, "GB/s"))
    for n, k in [(256, 3), (512, 5)] if args.quick else [(256, 3), (512, 3), (512, 5), (1024, 5)]:
        img = rng.standard_normal((n, n)).astype(np.float32)
        ker = rng.standard_normal((k, k)).astype(np.float32)
        t_np, t_tr = compare_times(
            lambda i=img, k=ker: ref.convolve2d(i, k),
            lambda i=img, k=ker: trueno.convolve2d(i, k),
            repeat,
        )
        flops = 2 * (n - k + 1) ** 2 * k * k
        rows.append(
            row("convolve2d", f"{n}x{n} * {k}x{k}", t_np, t_tr, flops / t_tr / 1e9, "GFLOP/s")
        )
    print_table(["op", "size", "numpy", "trueno", "ratio", "trueno rate", "% sgemv bw"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
