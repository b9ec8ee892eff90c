"""Measure where AUTO should switch from numpy to numba, per threshold class.

    python benches/dispatch_thresholds.py [--quick]

For one representative op per class, times the op with the numpy and the numba backend
forced (alternating rounds, medians) at sizes 2**6 .. 2**22 and reports the smallest size
from which numba stays faster. Prints the THRESHOLDS table to paste into trueno/dispatch.py."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import compare_times, fmt_time, print_table  # noqa: E402

import trueno  # noqa: E402
from trueno import dispatch  # noqa: E402

REPRESENTATIVE = {  # class -> ops (the class threshold is the largest crossover among them)
    "elementwise": ("add", "abs", "scale"),
    "clip": ("relu", "clamp"),
    "transcendental": ("exp", "tanh"),
    "fused": ("sigmoid", "gelu", "silu"),
    "reduction": ("sum", "norm_l1", "sum_kahan"),
    "blas1": ("dot", "normalize"),
    "sumsq": ("sum_of_squares", "norm_l2"),
    "extrema": ("max", "argmax"),
    "rowwise": ("softmax", "rms_norm", "layer_norm"),
    "stats": ("mean", "variance", "zscore"),
    "conv": ("convolve2d",),
    "libm": ("sin", "ln"),
}
NEVER = 1 << 62


def args_for(name: str, n: int, rng):
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    if name in ("ln",):
        x = np.abs(x) + np.float32(0.1)
    if name in ("add", "dot"):
        return (x, x.copy())
    if name == "scale":
        return (x, 2.5)
    if name == "clamp":
        return (x, -1.0, 1.0)
    if name == "convolve2d":
        side = max(3, int(np.sqrt(n / 9)))
        return (
            x[: side * side].reshape(side, side)
            if side * side <= n
            else np.ones((side, side), np.float32),
            np.ones((3, 3), np.float32),
        )
    return (x,)


def crossover(name: str, exps, repeat: int, rng):
    fn = getattr(trueno, name)
    faster = []
    for e in exps:
        args = args_for(name, 1 << e, rng)

        def on(backend, args=args):
            def call():
                with trueno.use_backend(backend):
                    fn(*args)

            return call

        t_np, t_nb = compare_times(on("numpy"), on("numba"), repeat)
        faster.append((e, t_np, t_nb))
    first = NEVER
    for e, t_np, t_nb in reversed(faster):
        if t_nb < t_np:
            first = 1 << e
        else:
            break
    return first, faster


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="every other size, fewer repeats")
    args = p.parse_args(argv)
    exps = list(range(6, 23, 4 if args.quick else 2))
    repeat = 3 if args.quick else 7
    trueno.warmup(progress=False)
    rng = np.random.default_rng(0)
    result, rows = {}, []
    for kind, names in REPRESENTATIVE.items():
        worst = 0
        for name in names:
            first, points = crossover(name, exps, repeat, rng)
            worst = max(worst, first)
            for e, t_np, t_nb in points:
                rows.append(
                    [kind, name, f"2**{e}", fmt_time(t_np), fmt_time(t_nb), f"{t_np / t_nb:.2f}"]
                )
        result[kind] = worst
    print_table(["class", "op", "n", "numpy", "numba", "numpy/numba"], rows)
    print("\n# paste into trueno/dispatch.py:")
    print("THRESHOLDS: dict[str, int] = {")
    for kind in dispatch.THRESHOLDS:
        v = result.get(kind, dispatch.THRESHOLDS[kind])
        text = "1 << 62" if v >= NEVER else f"1 << {int(v).bit_length() - 1}"
        print(f'    "{kind}": {text},')
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
