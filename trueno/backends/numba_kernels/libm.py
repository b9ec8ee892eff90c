"""Numba kernels of the libm-class ops.

ln, log2, log10, sin, cos, tan, sinh, cosh, asin, acos, atan, asinh, acosh and atanh are
vectorized (:mod:`._logtrig`, 1-3 ulp): they loop over ``nb.prange`` and run on numba's OpenMP
team for big inputs, like exp; dispatch sends each to numba from the size where it beats numpy
for the input's dtype (the "trig", "trig64", "log" and "hyperbolic" classes; log2 and log10 stay
on numpy's faster SIMD kernels). pow calls libm per element: LLVM does not vectorize libm
calls, and numpy's pow is faster here, so dispatch keeps it on numpy ("libm" class); forcing
the numba backend runs it (split over threads for big inputs)."""

from __future__ import annotations

import numba as nb
import numpy as np

from trueno.backends.numba_cache import drop_stale
from trueno.backends.numba_kernels import _team
from trueno.backends.numba_kernels._logtrig import (
    facos,
    facosh,
    fasin,
    fasinh,
    fatan,
    fatanh,
    fcos,
    fcosh,
    flog,
    flog2,
    flog10,
    fsin,
    fsinh,
    ftan,
    trig_far,
)
from trueno.backends.numba_kernels._math import wide_vectors
from trueno.backends.numba_kernels.elementwise import (
    PAR_MIN,
    PAR_MIN_MATH,
    TEAM_MIN_MATH,
    binary,
    unary,
)

drop_stale(__file__, ("_math.py", "_logtrig.py", "elementwise.py"))

JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
KERNELS: dict = {}


@nb.njit(**JIT)
def _ln(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = flog(x)


@nb.njit(**JIT)
def _log2(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = flog2(x)


@nb.njit(**JIT)
def _log10(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = flog10(x)


def _trig_template(out, a):
    """FN over a; its finite elements past the reduction's range (trig_far) then again from
    libm's LIBM_FN, after the vector loop (FN, LIBM_FN: globals of each variant)."""
    far = 0
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = FN(x)  # noqa: F821
        far += np.int64(trig_far(x))
    if far:
        for i in range(out.size):
            x = a[i]
            if trig_far(x):
                out[i] = LIBM_FN(x)  # noqa: F821


_sin, _cos, _tan = (
    _team.variant(_trig_template, f"_{name}", JIT, parallel=False, FN=fast, LIBM_FN=slow)
    for name, fast, slow in (("sin", fsin, np.sin), ("cos", fcos, np.cos), ("tan", ftan, np.tan))
)


@nb.njit(**JIT)
def _sinh(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = fsinh(x)


@nb.njit(**JIT)
def _cosh(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = fcosh(x)


@nb.njit(**JIT)
def _asin(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = fasin(x)


@nb.njit(**JIT)
def _acos(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = facos(x)


@nb.njit(**JIT)
def _atan(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = fatan(x)


@nb.njit(**JIT)
def _asinh(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = fasinh(x)


@nb.njit(**JIT)
def _acosh(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = facosh(x)


@nb.njit(**JIT)
def _atanh(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = fatanh(x)


@nb.njit(**JIT)
def _pow(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in range(out.size):
            x = a[i]
            out[i] = x**y
    else:
        for i in range(out.size):
            x = a[i]
            y = b[i]
            out[i] = x**y


VECTOR = {
    "ln": _ln,
    "log2": _log2,
    "log10": _log10,
    "sin": _sin,
    "cos": _cos,
    "tan": _tan,
    "sinh": _sinh,
    "cosh": _cosh,
    "asin": _asin,
    "acos": _acos,
    "atan": _atan,
    "asinh": _asinh,
    "acosh": _acosh,
    "atanh": _atanh,
}
for _name, _k in VECTOR.items():
    KERNELS[_name] = unary(_k, PAR_MIN, TEAM_MIN_MATH)
KERNELS["pow"] = binary(_pow, PAR_MIN_MATH)


def warm(dtype) -> None:
    """Load the team twins where they will run (trueno.warmup)."""
    _team.warm([KERNELS[name] for name in VECTOR], TEAM_MIN_MATH, dtype)
