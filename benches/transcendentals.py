"""exp, tanh, sigmoid, gelu: numpy vs numba on one core (the serial kernel) and on every
thread (the numba backend's kernel), float32 and float64, interleaved in one run.

    python benches/transcendentals.py [--n 1e6]

Target (issue 11): the one-core numba kernel at least as fast as numpy (ratio "1T" >= 1), so
that the threaded kernel ("all T") approaches the thread count ("scaling": 1T time / all-T
time; it needs idle cores: with a co-tenant on a 2-core host the second thread waits)."""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import compare_times, fmt_time, print_table  # noqa: E402

from trueno import backends, cpu  # noqa: E402
from trueno.backends import Backend  # noqa: E402
from trueno.backends.numba_kernels import _math, _par  # noqa: E402
from trueno.backends.numba_kernels import activations as act  # noqa: E402
from trueno.backends.numba_kernels import elementwise as ew  # noqa: E402

SERIAL = {"exp": ew._exp, "tanh": ew._tanh, "sigmoid": act._sigmoid, "gelu": act._gelu_tanh}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="1e6", help="elements (default 1e6)")
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args(argv)
    n = int(float(args.n))
    ref = backends.load(Backend.NUMPY).KERNELS
    threaded = backends.load(Backend.NUMBA).KERNELS
    rng = np.random.default_rng(0)
    rows = []
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal(n) * 3).astype(dtype)
        out = np.empty_like(x)
        for name, serial in SERIAL.items():
            numpy_fn, all_threads = partial(ref[name], x), partial(threaded[name], x)
            with np.errstate(all="ignore"):
                t_np, t_1 = compare_times(numpy_fn, partial(serial, out, x), args.repeat)
                _, t_all = compare_times(numpy_fn, all_threads, args.repeat)
            rows.append(
                [
                    name,
                    np.dtype(dtype).name,
                    fmt_time(t_np),
                    fmt_time(t_1),
                    f"{t_np / t_1:.2f}",
                    fmt_time(t_all),
                    f"{t_np / t_all:.2f}",
                    f"{t_1 / t_all:.2f}",
                ]
            )
    two_k = "vscalef" if _math.SCALEF else "exponent bits"
    print(f"n = {n:.0e}, {_par.THREADS} threads, {cpu.cpu_name()}, 2**k by {two_k}")
    headers = ["op", "dtype", "numpy", "numba 1T", "1T ratio", "numba all T", "all-T ratio"]
    headers.append("scaling")
    print_table(headers, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
