"""Element-wise numba kernels: ``_op(out, a[, b])`` loops over ``nb.prange(out.size)`` on flat
contiguous arrays so LLVM vectorizes them; no fastmath (results are numpy's bits, NaN and Inf
included). exp and tanh use the float32 and float64 approximations of :mod:`._math` (FMA-
evaluated polynomials and rationals, 2**k by vscalef on AVX-512 hosts); the libm-backed ops
(sin, ln, pow ...) live in :mod:`.libm`."""

from __future__ import annotations

import numba as nb
import numpy as np

from trueno.backends.numba_cache import drop_stale
from trueno.backends.numba_kernels import _out, _team
from trueno.backends.numba_kernels._math import fexp, ftanh, wide_vectors
from trueno.backends.numba_kernels._par import map_chunks

drop_stale(__file__, ("_math.py",))

JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
ONE = np.float32(1.0)
ZERO = np.float32(0.0)
# Sizes from which this module's kernels (and the activations') split over numba's OpenMP team
# (a fork and join of 2-3 us). Memory-bound ones from TEAM_MIN: Zen 4, 2 threads, against
# numpy (benches/vector_ops.py): add 1.08x at 1e5, 1.13-1.19x at 1.6e5-2e5, 1.22-1.25x at
# 2^18; abs, neg, floor, round 0.93-0.97x at 1e5, 1.19-1.24x at 2^17. Compute-bound ones (exp, tanh,
# sigmoid, gelu, silu ...) from TEAM_MIN_MATH, against one thread: 0.97-1.14x at 2^14,
# 1.19-1.35x at 2^15, 1.43-1.59x at 2^16
TEAM_MIN = 1 << 17
TEAM_MIN_MATH = 1 << 15
# copysign, signum, sqrt, fract, lerp, fma: float32, against the serial kernel, the team read
# 0.6-0.9x at 2^15, 0.9-1.1x at 2^16 and 1.2-1.4x at 2^17
TEAM_MIN_COMPUTE = 1 << 16
# Where the team is not taken (a fork()ed child, a paused team) and for libm's kernels (range
# loops, no twin): the pool's chunks, claimed dynamically (a worker waiting for a core costs
# one chunk), memory-bound from PAR_MIN, compute-bound from PAR_MIN_MATH. Its hand-off is
# dear: at 2^22 (DRAM) it read abs at 0.95x numpy and add at 1.02x; sigmoid split read 0.38x
# one thread at 2^17, 0.66x at 3e5, 1.24x at 1e6, 1.67x at 4e6
PAR_MIN = 1 << 22
PAR_MIN_MATH = 1 << 20
KERNELS: dict = {}

# --- unary: out[i] = f(a[i]) ---


@nb.njit(**JIT)
def _abs(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = np.abs(x)


@nb.njit(**JIT)
def _neg(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = -x


@nb.njit(**JIT)
def _signum(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = ONE if x > ZERO else (-ONE if x < ZERO else x)


@nb.njit(**JIT)
def _recip(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = ONE / x


@nb.njit(**JIT)
def _sqrt(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = np.sqrt(x)


@nb.njit(**JIT)
def _floor(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = np.floor(x)


@nb.njit(**JIT)
def _ceil(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = np.ceil(x)


@nb.njit(**JIT)
def _round(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = np.rint(x)


@nb.njit(**JIT)
def _trunc(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = np.trunc(x)


@nb.njit(**JIT)
def _fract(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = x - np.trunc(x)


@nb.njit(**JIT)
def _exp(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = fexp(x)


@nb.njit(**JIT)
def _tanh(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = ftanh(x)


# --- binary: out[i] = f(a[i], b[i]); a 1-element b broadcasts ---


@nb.njit(**JIT)
def _add(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in nb.prange(out.size):
            x = a[i]
            out[i] = x + y
    else:
        for i in nb.prange(out.size):
            x = a[i]
            y = b[i]
            out[i] = x + y


@nb.njit(**JIT)
def _sub(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in nb.prange(out.size):
            x = a[i]
            out[i] = x - y
    else:
        for i in nb.prange(out.size):
            x = a[i]
            y = b[i]
            out[i] = x - y


@nb.njit(**JIT)
def _mul(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in nb.prange(out.size):
            x = a[i]
            out[i] = x * y
    else:
        for i in nb.prange(out.size):
            x = a[i]
            y = b[i]
            out[i] = x * y


@nb.njit(**JIT)
def _div(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in nb.prange(out.size):
            x = a[i]
            out[i] = x / y
    else:
        for i in nb.prange(out.size):
            x = a[i]
            y = b[i]
            out[i] = x / y


@nb.njit(**JIT)
def _minimum(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in nb.prange(out.size):
            x = a[i]
            out[i] = x if (x < y) | (x != x) else y
    else:
        for i in nb.prange(out.size):
            x = a[i]
            y = b[i]
            out[i] = x if (x < y) | (x != x) else y


@nb.njit(**JIT)
def _maximum(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in nb.prange(out.size):
            x = a[i]
            out[i] = x if (x > y) | (x != x) else y
    else:
        for i in nb.prange(out.size):
            x = a[i]
            y = b[i]
            out[i] = x if (x > y) | (x != x) else y


@nb.njit(**JIT)
def _copysign(out, a, b):
    if b.size == 1:
        y = b[0]
        for i in nb.prange(out.size):
            x = a[i]
            out[i] = np.copysign(x, y)
    else:
        for i in nb.prange(out.size):
            x = a[i]
            y = b[i]
            out[i] = np.copysign(x, y)


# --- with parameters ---


@nb.njit(**JIT)
def _scale(out, a, s):
    for i in nb.prange(out.size):
        out[i] = a[i] * s


@nb.njit(**JIT)
def _clamp(out, a, lo, hi):
    for i in nb.prange(out.size):
        x = a[i]
        v = lo if x < lo else x
        out[i] = hi if v > hi else v


@nb.njit(**JIT)
def _lerp(out, a, b, t):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = x + t * (b[i] - x)


@nb.njit(**JIT)
def _fma(out, a, b, c):
    for i in nb.prange(out.size):
        out[i] = a[i] * b[i] + c[i]


MATH = {"exp", "tanh"}  # compute-bound: on the team from TEAM_MIN_MATH
# the ops numpy runs well below memory speed (dispatch's "compute" and "fma" classes): on the
# team from TEAM_MIN_COMPUTE
COMPUTE = {"copysign", "signum", "sqrt", "fract", "lerp", "fma"}


def team_min(name: str) -> int:
    return TEAM_MIN_MATH if name in MATH else TEAM_MIN_COMPUTE if name in COMPUTE else TEAM_MIN


def flat(a: np.ndarray) -> np.ndarray:
    """A contiguous 1-D view (a copy only for strided input; ``a`` itself when it is one: a
    new view costs a call 0.1-0.2 us, and numba's argument typing another)."""
    if a.flags.c_contiguous:
        return a if a.ndim == 1 else a.reshape(-1)
    return np.ascontiguousarray(a).reshape(-1)


def launcher(kern, par_min=PAR_MIN, team_min=None):
    """``launch(out, arrays, params)``: ``kern`` over the flat arrays on the calling thread,
    then split over threads: with ``team_min``, from there on numba's OpenMP team (``kern``'s
    loop must be a ``prange``) while :func:`._team.ok`; else from ``par_min`` in the pool's
    chunks."""
    twin = None if team_min is None else _team.twin(kern)

    def launch(out, arrays, params=()):
        if twin is not None and out.size >= team_min and _team.ok():
            _team.call(twin, out.size, out, *arrays, *params)
        else:
            map_chunks(kern, out, arrays, params, par_min)

    launch.team = twin  # run.team of the public forms below: the tests check both
    return launch


def unary(kern, par_min=PAR_MIN, team_min=None):
    launch = launcher(kern, par_min, team_min)

    def run(a):
        out = _out.empty(a.shape, a.dtype)
        launch(flat(out), (flat(a),))
        return out

    run.team = launch.team
    return run


def binary(kern, par_min=PAR_MIN, team_min=None):
    launch = launcher(kern, par_min, team_min)

    def run(a, b):
        if np.ndim(a) == 0:  # scalar first operand: rare, broadcast it
            a = np.full(np.shape(b), a, dtype=np.result_type(a, b))
        out = _out.empty(a.shape, a.dtype)
        if np.ndim(b) == 0:
            # the 1-element b is a parameter, not an array: the pool's chunks slice arrays
            launch(flat(out), (flat(a),), (np.full(1, b, dtype=a.dtype),))
        else:
            launch(flat(out), (flat(a), flat(b)))
        return out

    run.team = launch.team
    return run


def with_params(kern, n_arrays, par_min=PAR_MIN, team_min=None):
    launch = launcher(kern, par_min, team_min)

    def run(a, *rest):
        arrays, params = rest[: n_arrays - 1], rest[n_arrays - 1 :]
        t = a.dtype.type
        out = _out.empty(a.shape, a.dtype)
        launch(flat(out), (flat(a), *(flat(x) for x in arrays)), tuple(t(p) for p in params))
        return out

    run.team = launch.team
    return run


UNARY = {
    "abs": _abs,
    "neg": _neg,
    "signum": _signum,
    "recip": _recip,
    "sqrt": _sqrt,
    "floor": _floor,
    "ceil": _ceil,
    "round": _round,
    "trunc": _trunc,
    "fract": _fract,
    "exp": _exp,
    "tanh": _tanh,
}
BINARY = {
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "minimum": _minimum,
    "maximum": _maximum,
    "copysign": _copysign,
}
# name: (kernel, arrays, scalar parameters)
PARAMS = {
    "scale": (_scale, 1, 1),
    "clamp": (_clamp, 1, 2),
    "lerp": (_lerp, 2, 1),
    "fma": (_fma, 3, 0),
}
for _name, _k in UNARY.items():
    KERNELS[_name] = unary(_k, PAR_MIN, team_min(_name))
for _name, _k in BINARY.items():
    KERNELS[_name] = binary(_k, PAR_MIN, team_min(_name))
for _name, (_k, _n_arrays, _) in PARAMS.items():
    KERNELS[_name] = with_params(_k, _n_arrays, team_min=team_min(_name))


def _warm_call(name, run):
    if name in UNARY:
        return run
    if name in BINARY:
        return lambda x: run(x, x)
    _, n_arrays, n_params = PARAMS[name]
    return lambda x: run(x, *[x] * (n_arrays - 1), *[0.5] * n_params)


def warm(dtype) -> None:
    """Load the team twins where they will run (trueno.warmup)."""
    _team.warm([_warm_call(name, run) for name, run in KERNELS.items()], TEAM_MIN, dtype)
