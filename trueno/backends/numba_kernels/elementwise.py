"""Element-wise numba kernels: ``_op(out, a[, b])`` loops over ``range(out.size)`` on flat
contiguous arrays so LLVM vectorizes them; no fastmath (results are numpy's bits, NaN and Inf
included). exp and tanh use the float32 and float64 approximations of :mod:`._math` (FMA-
evaluated polynomials and rationals, 2**k by vscalef on AVX-512 hosts); the libm-backed ops
(sin, ln, pow ...) live in :mod:`.libm`."""

from __future__ import annotations

import numba as nb
import numpy as np

from trueno.backends.numba_cache import drop_stale
from trueno.backends.numba_kernels import _out
from trueno.backends.numba_kernels._math import fexp, ftanh, wide_vectors
from trueno.backends.numba_kernels._par import map_chunks

drop_stale(__file__, ("_math.py",))

JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
ONE = np.float32(1.0)
ZERO = np.float32(0.0)
PAR_MIN = 1 << 22  # memory-bound: split only DRAM-resident arrays
PAR_MIN_MATH = 1 << 17  # compute-bound kernels split earlier
KERNELS: dict = {}

# --- unary: out[i] = f(a[i]) ---


@nb.njit(**JIT)
def _abs(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.abs(x)


@nb.njit(**JIT)
def _neg(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = -x


@nb.njit(**JIT)
def _signum(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = ONE if x > ZERO else (-ONE if x < ZERO else x)


@nb.njit(**JIT)
def _recip(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = ONE / x


@nb.njit(**JIT)
def _sqrt(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.sqrt(x)


@nb.njit(**JIT)
def _floor(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.floor(x)


@nb.njit(**JIT)
def _ceil(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.ceil(x)


@nb.njit(**JIT)
def _round(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.rint(x)


@nb.njit(**JIT)
def _trunc(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = np.trunc(x)


@nb.njit(**JIT)
def _fract(out, a):
    for i in range(out.size):
        x = a[i]
        out[i] = x - np.trunc(x)


@nb.njit(**JIT)
def _exp(out, a):
    wide_vectors()
    for i in range(out.size):
        x = a[i]
        out[i] = fexp(x)


@nb.njit(**JIT)
def _tanh(out, a):
    wide_vectors()
    for i in range(out.size):
        x = a[i]
        out[i] = ftanh(x)


# --- binary: out[i] = f(a[i], b[i]); a 1-element b broadcasts ---


@nb.njit(**JIT)
def _add(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in range(out.size):
            x = a[i]
            out[i] = x + y
    else:
        for i in range(out.size):
            x = a[i]
            y = b[i]
            out[i] = x + y


@nb.njit(**JIT)
def _sub(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in range(out.size):
            x = a[i]
            out[i] = x - y
    else:
        for i in range(out.size):
            x = a[i]
            y = b[i]
            out[i] = x - y


@nb.njit(**JIT)
def _mul(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in range(out.size):
            x = a[i]
            out[i] = x * y
    else:
        for i in range(out.size):
            x = a[i]
            y = b[i]
            out[i] = x * y


@nb.njit(**JIT)
def _div(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in range(out.size):
            x = a[i]
            out[i] = x / y
    else:
        for i in range(out.size):
            x = a[i]
            y = b[i]
            out[i] = x / y


@nb.njit(**JIT)
def _minimum(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in range(out.size):
            x = a[i]
            out[i] = x if (x < y) | (x != x) else y
    else:
        for i in range(out.size):
            x = a[i]
            y = b[i]
            out[i] = x if (x < y) | (x != x) else y


@nb.njit(**JIT)
def _maximum(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in range(out.size):
            x = a[i]
            out[i] = x if (x > y) | (x != x) else y
    else:
        for i in range(out.size):
            x = a[i]
            y = b[i]
            out[i] = x if (x > y) | (x != x) else y


@nb.njit(**JIT)
def _copysign(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in range(out.size):
            x = a[i]
            out[i] = np.copysign(x, y)
    else:
        for i in range(out.size):
            x = a[i]
            y = b[i]
            out[i] = np.copysign(x, y)


# --- with parameters ---


@nb.njit(**JIT)
def _scale(out, a, s):
    for i in range(out.size):
        out[i] = a[i] * s


@nb.njit(**JIT)
def _clamp(out, a, lo, hi):
    for i in range(out.size):
        x = a[i]
        v = lo if x < lo else x
        out[i] = hi if v > hi else v


@nb.njit(**JIT)
def _lerp(out, a, b, t):
    for i in range(out.size):
        x = a[i]
        out[i] = x + t * (b[i] - x)


@nb.njit(**JIT)
def _fma(out, a, b, c):
    for i in range(out.size):
        out[i] = a[i] * b[i] + c[i]


MATH = {"exp", "tanh"}


def flat(a: np.ndarray) -> np.ndarray:
    """A contiguous 1-D view (a copy only for strided input)."""
    return a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)


def unary(kern, par_min):
    def run(a):
        out = _out.empty(a.shape, a.dtype)
        map_chunks(kern, out.reshape(-1), (flat(a),), (), par_min)
        return out

    return run


def binary(kern, par_min):
    def run(a, b):
        if np.ndim(a) == 0:  # scalar first operand: rare, broadcast it
            a = np.full(np.shape(b), a, dtype=np.result_type(a, b))
        out = _out.empty(a.shape, a.dtype)
        if np.ndim(b) == 0:
            bb = np.full(1, b, dtype=a.dtype)
            map_chunks(kern, out.reshape(-1), (flat(a),), (bb,), par_min)
            return out
        map_chunks(kern, out.reshape(-1), (flat(a), flat(b)), (), par_min)
        return out

    return run


def with_params(kern, n_arrays, par_min=PAR_MIN):
    def run(a, *rest):
        arrays, params = rest[: n_arrays - 1], rest[n_arrays - 1 :]
        t = a.dtype.type
        out = _out.empty(a.shape, a.dtype)
        map_chunks(
            kern,
            out.reshape(-1),
            (flat(a), *(flat(x) for x in arrays)),
            tuple(t(p) for p in params),
            par_min,
        )
        return out

    return run


for _name, _k in [
    ("abs", _abs),
    ("neg", _neg),
    ("signum", _signum),
    ("recip", _recip),
    ("sqrt", _sqrt),
    ("floor", _floor),
    ("ceil", _ceil),
    ("round", _round),
    ("trunc", _trunc),
    ("fract", _fract),
    ("exp", _exp),
    ("tanh", _tanh),
]:
    KERNELS[_name] = unary(_k, PAR_MIN_MATH if _name in MATH else PAR_MIN)
for _name, _k in [
    ("add", _add),
    ("sub", _sub),
    ("mul", _mul),
    ("div", _div),
    ("minimum", _minimum),
    ("maximum", _maximum),
    ("copysign", _copysign),
]:
    KERNELS[_name] = binary(_k, PAR_MIN_MATH if _name in MATH else PAR_MIN)
KERNELS["scale"] = with_params(_scale, 1)
KERNELS["clamp"] = with_params(_clamp, 1)
KERNELS["lerp"] = with_params(_lerp, 2)
KERNELS["fma"] = with_params(_fma, 3)
