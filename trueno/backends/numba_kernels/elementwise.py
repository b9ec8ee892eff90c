"""Element-wise numba kernels (loops over ``range(v.size)`` on raveled views so LLVM
vectorizes them)."""

from __future__ import annotations

import numba as nb
import numpy as np

JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
KERNELS: dict = {}


@nb.njit(**JIT)
def _add(a, b, out):
    for i in range(out.size):
        out[i] = a[i] + b[i]


def add(a, b):
    out = np.empty(a.shape, dtype=np.result_type(a, b))
    _add(a.ravel(), b.ravel(), out.ravel())
    return out


KERNELS["add"] = add
