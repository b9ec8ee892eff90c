"""Statistics kernels: two-pass (mean, then centered sums) with reassociating sums, split
over threads for big inputs; zscore and minmax_normalize finish with one fused map."""

from __future__ import annotations

import numba as nb
import numpy as np

from trueno.backends.numba_cache import drop_stale
from trueno.backends.numba_kernels import _team
from trueno.backends.numba_kernels._math import fmaximum, fminimum
from trueno.backends.numba_kernels._par import reduce_chunks
from trueno.backends.numba_kernels._team import chunk
from trueno.backends.numba_kernels.elementwise import launcher
from trueno.backends.numba_kernels.reductions import _flat, _sum, sum_
from trueno.errors import DivisionByZeroError

drop_stale(__file__, ("_math.py", "_team.py", "reductions.py"))

JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
FAST = dict(JIT, fastmath={"reassoc", "contract"})
PAR_MIN = 1 << 22  # the pool's chunks: DRAM-resident sizes only (the team's fallback)
TEAM_MIN = 1 << 17  # the centred sums and the final map on numba's OpenMP team (as reductions)
KERNELS: dict = {}


@nb.njit(**FAST)
def _sq_dev(a, m):
    s = np.float32(0.0)
    for i in range(a.size):
        d = a[i] - m
        s += d * d
    return s


@nb.njit(**FAST)
def _co_dev(a, b, ma, mb):
    s = np.float32(0.0)
    for i in range(a.size):
        s += (a[i] - ma) * (b[i] - mb)
    return s


@nb.njit(**FAST)
def _sum_shift(a, c):
    s = np.float32(0.0)
    for i in range(a.size):
        s += a[i] - c
    return s


@nb.njit(**JIT)
def _minmax(a):
    lo = a[0]
    hi = a[0]
    for i in range(a.size):
        x = a[i]
        lo = fminimum(lo, x)  # NaN-propagating, vectorizes
        hi = fmaximum(hi, x)
    return lo, hi


@nb.njit(**JIT)
def _affine_div(out, a, m, s):
    for i in nb.prange(out.size):
        out[i] = (a[i] - m) / s


def _team1(a, p, k):
    parts = np.empty(k, a.dtype)
    for c in nb.prange(k):
        lo, hi = chunk(c, a.size, k)
        parts[c] = KERN(a[lo:hi], p)  # noqa: F821 (bound by _team.variant)
    return _sum(parts)


def _team2(a, b, pa, pb, k):
    parts = np.empty(k, a.dtype)
    for c in nb.prange(k):
        lo, hi = chunk(c, a.size, k)
        parts[c] = KERN(a[lo:hi], b[lo:hi], pa, pb)  # noqa: F821 (bound by _team.variant)
    return _sum(parts)


# kernel -> f(*arrays, *params, k): the kernel over k chunks on the team, the results summed
TEAM = {
    kern: _team.variant(tpl, f"{tpl.__name__}_{kern.py_func.__name__}", JIT, KERN=kern)
    for kern, tpl in ((_sq_dev, _team1), (_sum_shift, _team1), (_co_dev, _team2))
}
AFFINE_DIV = launcher(_affine_div, PAR_MIN, TEAM_MIN)  # the final map of zscore, minmax


def _total(kern, arrays, params, dtype):
    return dtype.type(_team.reduce(TEAM[kern], kern, arrays, params, TEAM_MIN, PAR_MIN, np.sum))


def _affine(f, m, s, shape):
    """(f - m) / s into a new array of ``shape``."""
    out = np.empty(shape, dtype=f.dtype)
    AFFINE_DIV(out.reshape(-1), (f,), (m, s))
    return out


def mean(a):
    return a.dtype.type(sum_(_flat(a)) / a.dtype.type(a.size))


def centre(f):
    """The mean as f[0] + mean(f - f[0]): exact for constant input (as the reference)."""
    a0 = f[0]
    return f.dtype.type(a0 + _total(_sum_shift, (f,), (a0,), f.dtype) / f.dtype.type(f.size))


def variance(a, ddof=0):
    f = _flat(a)
    m = centre(f)
    return a.dtype.type(_total(_sq_dev, (f,), (m,), a.dtype) / a.dtype.type(a.size - ddof))


def stddev(a, ddof=0):
    return np.sqrt(variance(a, ddof))


def covariance(a, b, ddof=0):
    fa, fb = _flat(a), _flat(b)
    c = _total(_co_dev, (fa, fb), (centre(fa), centre(fb)), a.dtype)
    return a.dtype.type(c / a.dtype.type(a.size - ddof))


def correlation(a, b):
    fa, fb = _flat(a), _flat(b)
    ma, mb = centre(fa), centre(fb)
    sa = np.sqrt(_total(_sq_dev, (fa,), (ma,), a.dtype))
    sb = np.sqrt(_total(_sq_dev, (fb,), (mb,), a.dtype))
    den = sa * sb
    if den == 0:
        raise DivisionByZeroError("correlation: an input has zero variance; expected both to vary")
    return a.dtype.type(_total(_co_dev, (fa, fb), (ma, mb), a.dtype) / den)


def zscore(a):
    f = _flat(a)
    m = centre(f)
    s = np.sqrt(a.dtype.type(_total(_sq_dev, (f,), (m,), a.dtype) / a.dtype.type(a.size)))
    if s == 0:
        raise DivisionByZeroError(
            "zscore: standard deviation is 0 (constant input); expected values that vary"
        )
    return _affine(f, m, s, a.shape)


def minmax_normalize(a):
    f = _flat(a)
    parts = reduce_chunks(_minmax, (f,), (), PAR_MIN)
    t = a.dtype.type
    if len(parts) == 1:  # one chunk (below PAR_MIN): no arrays of the partial results
        lo, hi = t(parts[0][0]), t(parts[0][1])
    else:
        lo = t(np.min(np.array([p[0] for p in parts], dtype=a.dtype)))  # NaN propagates
        hi = t(np.max(np.array([p[1] for p in parts], dtype=a.dtype)))
    if hi == lo:
        raise DivisionByZeroError(
            f"minmax_normalize: max == min == {lo} (constant input); expected values that vary"
        )
    return _affine(f, lo, t(hi - lo), a.shape)


KERNELS.update(
    mean=mean,
    variance=variance,
    stddev=stddev,
    covariance=covariance,
    correlation=correlation,
    zscore=zscore,
    minmax_normalize=minmax_normalize,
)


def warm(dtype) -> None:
    """Load the team's kernels where they will run (trueno.warmup)."""
    _team.warm((lambda x: covariance(x, x), zscore), TEAM_MIN, dtype)  # every team kernel
