"""Activation kernels: one vectorizable loop each, transcendentals from ._math (exp and tanh
polynomials in float32 and float64, FMA-evaluated, 2**k by vscalef on AVX-512 hosts; erfc,
expm1 polynomials in float32, libm in float64). No fastmath: NaN and Inf behave as in the
numpy reference, which uses the same formulas; selu's and gelu's constants take x's precision."""

from __future__ import annotations

import numba as nb
import numpy as np

from trueno.backends.numba_cache import drop_stale
from trueno.backends.numba_kernels import _team
from trueno.backends.numba_kernels._math import ferfc, fexp, fexpm1, like, wide_vectors
from trueno.backends.numba_kernels.elementwise import (
    PAR_MIN,
    PAR_MIN_MATH,
    TEAM_MIN,
    TEAM_MIN_MATH,
    unary,
    with_params,
)

drop_stale(__file__, ("_math.py", "elementwise.py"))

JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
ONE = np.float32(1.0)
ZERO = np.float32(0.0)
KERNELS: dict = {}

# float constants, cast to x's precision by like()
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
GELU_2C = 2 * 0.7978845608028654  # 2 sqrt(2/pi)
GELU_A = 0.044715
INV_SQRT2 = 0.7071067811865476


@nb.njit(**JIT)
def _relu(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = ZERO if x < ZERO else x


@nb.njit(**JIT)
def _leaky_relu(out, a, alpha):
    for i in nb.prange(out.size):
        x = a[i]
        out[i] = x * alpha if x < ZERO else x


@nb.njit(**JIT)
def _elu(out, a, alpha):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        neg = ZERO if x > ZERO else x
        out[i] = alpha * fexpm1(neg) if x < ZERO else x


@nb.njit(**JIT)
def _selu(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        neg = ZERO if x > ZERO else x
        out[i] = like(x, SELU_SCALE) * (like(x, SELU_ALPHA) * fexpm1(neg) if x < ZERO else x)


@nb.njit(**JIT)
def _sigmoid(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        out[i] = ONE / (ONE + fexp(-a[i]))


@nb.njit(**JIT)
def _gelu_tanh(out, a):
    # 0.5 x (1 + tanh(u)) == x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3)
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        u = like(x, GELU_2C) * (x + like(x, GELU_A) * x * x * x)
        out[i] = x / (ONE + fexp(-u))


@nb.njit(**JIT)
def _gelu_erf(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = np.float32(0.5) * x * ferfc(-x * like(x, INV_SQRT2))


@nb.njit(**JIT)
def _silu(out, a):
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        out[i] = x * (ONE / (ONE + fexp(-x)))


@nb.njit(**JIT)
def _hardswish(out, a):
    for i in nb.prange(out.size):
        x = a[i]
        t = x + np.float32(3.0)
        t = ZERO if t < ZERO else t
        t = np.float32(6.0) if t > np.float32(6.0) else t
        out[i] = x * t / np.float32(6.0)


@nb.njit(**JIT)
def _mish(out, a):
    # tanh(softplus(x)) = n / (n + 2) with n = e^x (e^x + 2): one exp, no log; beyond x = 20
    # the factor is 1 in float32 and float64 alike (and e^2x would overflow)
    for i in nb.prange(out.size):
        wide_vectors()
        x = a[i]
        e = fexp(np.float32(20.0) if x > np.float32(20.0) else x)
        n = e * (e + np.float32(2.0))
        out[i] = x if x > np.float32(20.0) else x * (n / (n + np.float32(2.0)))


# memory-bound kernels on the team from TEAM_MIN, the exp-based ones (compute-bound) from
# TEAM_MIN_MATH; the pool's chunks, where the team is not taken, from PAR_MIN / PAR_MIN_MATH
# (elementwise.py has the measurements)
_gelu_kernels = {
    "tanh": unary(_gelu_tanh, PAR_MIN_MATH, TEAM_MIN_MATH),
    "none": unary(_gelu_erf, PAR_MIN_MATH, TEAM_MIN_MATH),
}


def gelu(x, approximate="tanh"):
    return _gelu_kernels[approximate](x)


_selu_run = unary(_selu, PAR_MIN_MATH, TEAM_MIN_MATH)

KERNELS.update(
    relu=unary(_relu, PAR_MIN, TEAM_MIN),
    leaky_relu=with_params(_leaky_relu, 1, PAR_MIN, TEAM_MIN),
    elu=with_params(_elu, 1, PAR_MIN_MATH, TEAM_MIN_MATH),
    selu=_selu_run,
    sigmoid=unary(_sigmoid, PAR_MIN_MATH, TEAM_MIN_MATH),
    gelu=gelu,
    silu=unary(_silu, PAR_MIN_MATH, TEAM_MIN_MATH),
    hardswish=unary(_hardswish, PAR_MIN, TEAM_MIN),
    mish=unary(_mish, PAR_MIN_MATH, TEAM_MIN_MATH),
)
# every kernel with a team twin, by name (gelu by its two forms): warm() and the tests
RUNS = {
    **{name: run for name, run in KERNELS.items() if name != "gelu"},
    "gelu_tanh": _gelu_kernels["tanh"],
    "gelu_erf": _gelu_kernels["none"],
}
PARAMS = {"leaky_relu": 0.01, "elu": 1.0}


def warm(dtype) -> None:
    """Load the team twins where they will run (trueno.warmup)."""
    calls = [
        (lambda x, run=run, p=PARAMS[name]: run(x, p)) if name in PARAMS else run
        for name, run in RUNS.items()
    ]
    _team.warm(calls, TEAM_MIN, dtype)
