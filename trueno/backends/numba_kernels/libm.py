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


def _map_template(out, a):
    """FN over a (FN: a global of each variant)."""
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = FN(x)  # noqa: F821


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


def _variant(template, name: str, **names):
    """A cached kernel ``_<name>`` from ``template`` seeing ``names`` (its team twin follows)."""
    return _team.variant(template, f"_{name}", JIT, parallel=False, **names)


# op name -> its vectorized kernel (_logtrig's forms)
VECTOR = {
    name: _variant(_map_template, name, FN=fn)
    for name, fn in (("ln", flog), ("log2", flog2), ("log10", flog10), ("sinh", fsinh),
                     ("cosh", fcosh), ("asin", fasin), ("acos", facos), ("atan", fatan),
                     ("asinh", fasinh), ("acosh", facosh), ("atanh", fatanh))
}  # fmt: skip
VECTOR.update(
    (name, _variant(_trig_template, name, FN=fast, LIBM_FN=slow))
    for name, fast, slow in (("sin", fsin, np.sin), ("cos", fcos, np.cos), ("tan", ftan, np.tan))
)


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


for _name, _k in VECTOR.items():
    KERNELS[_name] = unary(_k, PAR_MIN, TEAM_MIN_MATH)
KERNELS["pow"] = binary(_pow, PAR_MIN_MATH)


def warm(dtype) -> None:
    """Load the team twins where they will run (trueno.warmup)."""
    _team.warm([KERNELS[name] for name in VECTOR], TEAM_MIN_MATH, dtype)
