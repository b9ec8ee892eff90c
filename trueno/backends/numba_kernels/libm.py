"""Numba kernels that call libm per element (sin, ln, pow ...): correct and complete, but LLVM
does not vectorize libm calls, and numpy's own SIMD math (SVML on AVX-512 builds) is faster
here, so dispatch keeps these ops on numpy ("libm" threshold class); forcing the numba
backend runs them (split over threads for big inputs)."""

from __future__ import annotations

import numba as nb
import numpy as np

from trueno.backends.numba_cache import drop_stale
from trueno.backends.numba_kernels.elementwise import PAR_MIN_MATH, binary, unary

drop_stale(__file__, ("_math.py", "elementwise.py"))

JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
KERNELS: dict = {}


@nb.njit(**JIT)
def _ln(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.log(x)


@nb.njit(**JIT)
def _log2(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.log2(x)


@nb.njit(**JIT)
def _log10(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.log10(x)


@nb.njit(**JIT)
def _sin(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.sin(x)


@nb.njit(**JIT)
def _cos(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.cos(x)


@nb.njit(**JIT)
def _tan(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.tan(x)


@nb.njit(**JIT)
def _asin(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.arcsin(x)


@nb.njit(**JIT)
def _acos(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.arccos(x)


@nb.njit(**JIT)
def _atan(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.arctan(x)


@nb.njit(**JIT)
def _sinh(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.sinh(x)


@nb.njit(**JIT)
def _cosh(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.cosh(x)


@nb.njit(**JIT)
def _asinh(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.arcsinh(x)


@nb.njit(**JIT)
def _acosh(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.arccosh(x)


@nb.njit(**JIT)
def _atanh(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.arctanh(x)


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


for _name, _k in [
    ("ln", _ln),
    ("log2", _log2),
    ("log10", _log10),
    ("sin", _sin),
    ("cos", _cos),
    ("tan", _tan),
    ("asin", _asin),
    ("acos", _acos),
    ("atan", _atan),
    ("sinh", _sinh),
    ("cosh", _cosh),
    ("asinh", _asinh),
    ("acosh", _acosh),
    ("atanh", _atanh),
]:
    KERNELS[_name] = unary(_k, PAR_MIN_MATH)
KERNELS["pow"] = binary(_pow, PAR_MIN_MATH)
