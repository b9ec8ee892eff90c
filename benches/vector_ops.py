"""Vector ops: numpy vs trueno (AUTO dispatch) at sizes 1e2..1e7, float32 (or float64).

    python benches/vector_ops.py [--quick] [--ops exp,sum] [--sizes 1e5,1e6] [--dtype float64]

Prints the DRAM read bandwidth (BLAS sgemv over a >= 512 MB matrix, same thread count) and a
table per op: numpy time, trueno time, ratio (numpy / trueno: > 1 means trueno is faster),
GB/s moved by trueno (inputs + output), and for reductions the % of the sgemv bandwidth.
"numpy" is the idiomatic numpy expression (trueno's reference backend, called directly)."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import compare_times, fmt_time, print_table, sgemv_bandwidth_gbs, sizes  # noqa: E402

import trueno  # noqa: E402
from trueno import backends  # noqa: E402
from trueno.backends import Backend  # noqa: E402
from trueno.opspec import OPS  # noqa: E402

TARGET_3X = (
    "exp",
    "tanh",
    "sigmoid",
    "gelu",
    "silu",
    "softmax",
    "log_softmax",
    "layer_norm",
    "rms_norm",
    "zscore",
)
BANDWIDTH = ("dot", "sum", "max", "argmax", "norm_l1", "norm_l2", "norm_linf")


def make_args(spec, n: int, rng, dtype=np.float32) -> tuple:
    x = (rng.standard_normal(n) * 3).astype(dtype)
    if spec.domain is not None:
        lo, hi = spec.domain
        x = rng.uniform(lo, min(hi, lo + 10), n).astype(dtype)
    if spec.name in ("ln", "log2", "log10", "sqrt"):
        x = np.abs(x) + x.dtype.type(0.1)
    y = (rng.standard_normal(n) * 3).astype(dtype)
    return {
        "x": (x,),
        "xy": (x, y),
        "xs": (x, 2.5),
        "xss": (x, -1.0, 1.0),
        "xys": (x, y, 0.25),
        "xyz": (x, y, x),
        "red": (x,),
        "redxy": (x, y),
        "vec": (x,),
        "row": (x,),
    }[spec.args]


def bench_op(name: str, n: int, repeat: int, rng, dtype=np.float32):
    spec = OPS[name]
    args = make_args(spec, n, rng, dtype)
    fn = getattr(trueno, name)
    ref = backends.load(Backend.NUMPY).KERNELS[name]
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    with np.errstate(all="ignore"):
        t_np, t_tr = compare_times(lambda: ref(*args), lambda: fn(*args), repeat)
        out = fn(*args)
    nbytes = sum(a.nbytes for a in arrays) + int(getattr(out, "nbytes", 0))
    return t_np, t_tr, nbytes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="sizes 1e2..1e6, fewer repeats")
    p.add_argument("--ops", help="comma-separated op names (default: every vector op)")
    p.add_argument("--sizes", help="comma-separated sizes, e.g. 1e5,1e6")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = p.parse_args(argv)
    names = (
        args.ops.split(",") if args.ops else [n for n, s in OPS.items() if s.args not in ("mat",)]
    )
    ns = [int(float(s)) for s in args.sizes.split(",")] if args.sizes else sizes(args.quick)
    repeat = 3 if args.quick else 7
    trueno.warmup(progress=False)
    bw = sgemv_bandwidth_gbs()
    print(f"DRAM read bandwidth (sgemv, {os.cpu_count()} CPUs): {bw:.1f} GB/s\n")
    rng = np.random.default_rng(0)
    rows = []
    for name in names:
        for n in ns:
            t_np, t_tr, nbytes = bench_op(name, n, repeat, rng, np.dtype(args.dtype))
            gbs = nbytes / t_tr / 1e9
            pct = f"{100 * gbs / bw:.0f}%" if name in BANDWIDTH else ""
            rows.append(
                [
                    name,
                    f"{n:.0e}",
                    fmt_time(t_np),
                    fmt_time(t_tr),
                    f"{t_np / t_tr:.2f}",
                    f"{gbs:.1f}",
                    pct,
                ]
            )
    print_table(["op", "n", "numpy", "trueno", "ratio", "GB/s", "% sgemv bw"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
