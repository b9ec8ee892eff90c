"""Helpers of the numba math tests: a numba loop over one scalar function (of ``_math`` by
name, or any jitted one), and the distance in representable steps of the result's dtype."""

from __future__ import annotations

import numba
import numpy as np

from trueno.backends.numba_kernels import _math as M

KERNELS: dict = {}


def loop(f):
    """A loop over the scalar function ``f``, compiled once per function (no cache: it would
    not see edits to the module that defines ``f``)."""
    if f not in KERNELS:

        @numba.njit(error_model="numpy")
        def apply(x, out):
            for i in range(x.size):
                out[i] = f(x[i])

        KERNELS[f] = apply
    return KERNELS[f]


def kernel(name: str):
    """A loop over ``_math.<name>``."""
    return loop(getattr(M, name))


def run(name: str, x: np.ndarray) -> np.ndarray:
    """``_math.<name>`` over x, element by element, in x's dtype."""
    out = np.empty_like(x)
    kernel(name)(x, out)
    return out


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in representable steps of the arrays' dtype, float32 or float64 (subnormals
    included; -0 and +0 are 0 apart)."""
    it = np.int32 if got.dtype == np.float32 else np.int64
    lowest = np.array(np.iinfo(it).min, it)

    def ordered(v):
        i = v.view(it)
        return np.where(i < 0, lowest - i, i).astype(np.int64)

    return np.abs(ordered(got) - ordered(want))
