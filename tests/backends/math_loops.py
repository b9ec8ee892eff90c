"""Helpers of the _math tests: a numba loop over one ``_math`` scalar function, and the
distance in float64 steps."""

from __future__ import annotations

import numba
import numpy as np

from trueno.backends.numba_kernels import _math as M

KERNELS: dict = {}


def kernel(name: str):
    """A loop over ``_math.<name>``, compiled once per function (no cache: it would not see
    edits to _math)."""
    if name not in KERNELS:
        f = getattr(M, name)

        @numba.njit(error_model="numpy")
        def apply(x, out):
            for i in range(x.size):
                out[i] = f(x[i])

        KERNELS[name] = apply
    return KERNELS[name]


def run(name: str, x: np.ndarray) -> np.ndarray:
    """``_math.<name>`` over x, element by element, in x's dtype."""
    out = np.empty_like(x)
    kernel(name)(x, out)
    return out


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in representable float64 steps (subnormals included; -0 and +0 are 0 apart)."""

    def ordered(v):
        i = v.view(np.int64)
        return np.where(i < 0, np.int64(-(2**63)) - i, i)

    return np.abs(ordered(got) - ordered(want))
