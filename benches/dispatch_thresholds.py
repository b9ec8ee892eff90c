"""Measure where AUTO should switch from numpy to numba, per threshold class.

    python benches/dispatch_thresholds.py [--quick]

For one representative op per class, times the op as AUTO runs it on each side of the class
threshold (alternating rounds, medians) at sizes 2**6 .. 2**22 and reports the smallest size
from which numba stays faster. Below the threshold a call takes numpy's inline fast path, above
it the general path to numba, so each side is timed with the threshold set to put the call
there (never / 0), not with a forced backend (a forced call takes the general path on both
sides and hides the fast path's saving). Prints the THRESHOLDS table to paste into
trueno/dispatch.py.

    python benches/dispatch_thresholds.py [--quick] [--classes clip,sumsq]"""

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
    "compute": ("copysign", "sqrt", "fract", "lerp"),
    "fma": ("fma",),
    "clip": ("relu", "clamp"),
    "transcendental": ("exp", "tanh"),
    "fused": ("sigmoid", "gelu", "silu"),
    "reduction": ("sum", "norm_l1", "sum_kahan", "mean"),
    "blas1": ("dot", "normalize"),
    "sumsq": ("sum_of_squares", "norm_l2"),
    "extrema": ("max", "min"),
    "argextrema": ("argmax", "argmin"),
    "rowwise": ("softmax", "rms_norm", "layer_norm"),
    "stats": ("variance", "zscore"),
    "conv": ("convolve2d",),
    "trig": ("sin", "cos", "tan", "atan", "asin"),
    "log": ("ln",),
    "hyperbolic": ("sinh", "cosh"),
    "libm": ("log2", "log10"),
}
NEVER = 1 << 62


def args_for(name: str, n: int, rng):
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    if name in ("ln", "log2", "log10", "sqrt"):
        x = np.abs(x) + np.float32(0.1)
    if name in ("asin", "acos"):
        x = np.tanh(x)
    if name in ("add", "dot", "copysign"):
        return (x, x[::-1].copy())
    if name == "lerp":
        return (x, x[::-1].copy(), 0.3)
    if name == "fma":
        return (x, x[::-1].copy(), x.copy())
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
    kind = trueno.OPS[name].kind
    faster = []
    saved = dispatch.THRESHOLDS[kind]
    try:
        for e in exps:
            args = args_for(name, 1 << e, rng)

            def auto(bound, args=args):
                def call():  # the threshold changes once a round (compare_times alternates)
                    if dispatch.THRESHOLDS[kind] != bound:
                        dispatch.THRESHOLDS[kind] = bound
                    fn(*args)

                return call

            t_np, t_nb = compare_times(auto(NEVER), auto(0), repeat)
            faster.append((e, t_np, t_nb))
    finally:
        dispatch.THRESHOLDS[kind] = saved
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
    p.add_argument("--classes", help="comma-separated threshold classes (default: all)")
    args = p.parse_args(argv)
    classes = args.classes.split(",") if args.classes else list(REPRESENTATIVE)
    exps = list(range(6, 23, 4 if args.quick else 2))
    repeat = 3 if args.quick else 7
    trueno.warmup(progress=False)
    rng = np.random.default_rng(0)
    result, rows = {}, []
    for kind in classes:
        names = REPRESENTATIVE[kind]
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
