"""Reduction kernels. Sums vectorize with ``fastmath={'reassoc', 'contract'}`` (many partial
sums; NaN and Inf still propagate); max/min/argmax use llvm.maximum/minimum (IEEE-2019, NaN-
propagating like numpy; their reductions vectorize) over four independent streams. Inputs above
PAR_MIN are split over threads. argmax/argmin work in blocks: a vectorized block max, then
one scalar scan of the best block, so the data is read once."""

from __future__ import annotations

import numba as nb
import numpy as np

from trueno.backends.numba_cache import drop_stale
from trueno.backends.numba_kernels import _par, _team, elementwise
from trueno.backends.numba_kernels._math import fmaximum, fminimum
from trueno.backends.numba_kernels._par import bounds, reduce_chunks
from trueno.backends.numba_kernels._team import chunk
from trueno.errors import DivisionByZeroError

drop_stale(__file__, ("_math.py", "_team.py"))

JIT = dict(cache=True, nogil=True, error_model="numpy")
FAST = dict(JIT, fastmath={"reassoc", "contract"})
PAR_MIN = 1 << 22  # the pool's chunks: DRAM-resident sizes only (the team's fallback)
# sum, dot, sum_of_squares, norm_l1, max, min split over numba's OpenMP team from here (Zen 4,
# 2 threads, the backends' kernels against numpy's/BLAS, 7 alternating rounds: max 0.65x at
# 1e5 (one thread), 1.13x at 2^18, 1.28x at 1e6, 1.63x at 4e6; dot 0.79x, 1.36x, 1.52x, 1.89x;
# at 2^17 on the team dot 1.09x, sum_of_squares 1.16x, max 0.77x (dispatch keeps max, min on
# numpy there))
TEAM_MIN = 1 << 17
BLOCK = 16384
KERNELS: dict = {}


@nb.njit(**FAST)
def _sum(a):
    s = np.float32(0.0)
    for i in range(a.size):
        s += a[i]
    return s


@nb.njit(**FAST)
def _dot(a, b):
    s = np.float32(0.0)
    for i in range(a.size):
        s += a[i] * b[i]
    return s


@nb.njit(**FAST)
def _sumsq(a):
    s = np.float32(0.0)
    for i in range(a.size):
        s += a[i] * a[i]
    return s


@nb.njit(**FAST)
def _sumabs(a):
    s = np.float32(0.0)
    for i in range(a.size):
        s += np.abs(a[i])
    return s


@nb.njit(**FAST)
def _sum_f64(a):
    # float32 data summed in float64: exact enough that order does not matter (vectorizes)
    s = 0.0
    for i in range(a.size):
        s += np.float64(a[i])
    return s


@nb.njit(**JIT)
def _sum_kahan(a):
    # Kahan-Babuska-Neumaier in float64 (exact for float32 sums up to ~2**29 elements)
    s = 0.0
    c = 0.0
    for i in range(a.size):
        x = np.float64(a[i])
        t = s + x
        if np.abs(s) >= np.abs(x):
            c += (s - t) + x
        else:
            c += (x - t) + s
        s = t
    return s + c if np.isfinite(s) else s


@nb.njit(**JIT)
def _max(a):
    # four independent streams (quarters of a): four llvm.maximum chains run at once
    q = a.size // 4
    a0, a1, a2, a3 = a[:q], a[q : 2 * q], a[2 * q : 3 * q], a[3 * q : 4 * q]
    m0 = a[0]
    m1, m2, m3 = m0, m0, m0
    for i in range(q):
        m0, m1 = fmaximum(m0, a0[i]), fmaximum(m1, a1[i])
        m2, m3 = fmaximum(m2, a2[i]), fmaximum(m3, a3[i])
    tail = a[4 * q :]
    for i in range(tail.size):
        m0 = fmaximum(m0, tail[i])
    return fmaximum(fmaximum(m0, m1), fmaximum(m2, m3))


@nb.njit(**JIT)
def _min(a):
    q = a.size // 4
    a0, a1, a2, a3 = a[:q], a[q : 2 * q], a[2 * q : 3 * q], a[3 * q : 4 * q]
    m0 = a[0]
    m1, m2, m3 = m0, m0, m0
    for i in range(q):
        m0, m1 = fminimum(m0, a0[i]), fminimum(m1, a1[i])
        m2, m3 = fminimum(m2, a2[i]), fminimum(m3, a3[i])
    tail = a[4 * q :]
    for i in range(tail.size):
        m0 = fminimum(m0, tail[i])
    return fminimum(fminimum(m0, m1), fminimum(m2, m3))


# max |x| over the float bits viewed as signed ints of the same width: with the sign bit masked
# off, the order of the bits is the order of |x|, and any NaN (exponent all ones, mantissa not
# 0) is above +inf, so a NaN wins as numpy's max propagates it. An integer max reduction
# vectorizes (vpmaxsd/vpmaxsq), unlike a NaN-propagating float max: 4x numpy's abs().max() in
# cache. The casts keep numba from widening int32 & int32 to int64 (half the lanes).


@nb.njit(**JIT)
def _maxabs32(bits, mask):
    m = np.int32(bits[0] & mask)
    for i in range(bits.size):
        m = max(m, np.int32(bits[i] & mask))
    return m


@nb.njit(**JIT)
def _maxabs64(bits, mask):
    m = np.int64(bits[0] & mask)
    for i in range(bits.size):
        m = max(m, np.int64(bits[i] & mask))
    return m


@nb.njit(**JIT)
def _argext(a, sign):
    """(index of first max of sign*a, its value, saw NaN): NaN -> index of first NaN."""
    n = a.size
    best_blk = 0
    best = a[0] * sign
    for lo in range(0, n, BLOCK):
        blk = a[lo : min(lo + BLOCK, n)]
        m = blk[0] * sign
        for i in range(blk.size):  # one chain per block: inlined, vectorized
            m = fmaximum(m, blk[i] * sign)
        if m != m:
            for i in range(blk.size):
                if blk[i] != blk[i]:
                    return lo + i, blk[i], True
        if m > best:
            best = m
            best_blk = lo
    blk = a[best_blk : min(best_blk + BLOCK, n)]
    for i in range(blk.size):
        if blk[i] * sign == best:
            return best_blk + i, blk[i], False
    return best_blk, blk[0], False  # unreachable


def _flat(a):
    return a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)


def _team1(a, k):
    parts = np.empty(k, a.dtype)
    for c in nb.prange(k):
        lo, hi = chunk(c, a.size, k)
        parts[c] = KERN(a[lo:hi])  # noqa: F821 (bound by _team.variant)
    return JOIN(parts)  # noqa: F821


def _team2(a, b, k):
    parts = np.empty(k, a.dtype)
    for c in nb.prange(k):
        lo, hi = chunk(c, a.size, k)
        parts[c] = KERN(a[lo:hi], b[lo:hi])  # noqa: F821 (bound by _team.variant)
    return JOIN(parts)  # noqa: F821


# kernel -> f(*arrays, k): kernel over _team.chunk(c, n, k) for c < k on the team (TEAM_MIN
# keeps every chunk non-empty), the k results joined
TEAM = {
    kern: _team.variant(tpl, f"{tpl.__name__}_{kern.py_func.__name__}", JIT, KERN=kern, JOIN=join)
    for kern, tpl, join in (
        (_sum, _team1, _sum),
        (_dot, _team2, _sum),
        (_sumsq, _team1, _sum),
        (_sumabs, _team1, _sum),
        (_max, _team1, _max),
        (_min, _team1, _min),
    )
}


def _reduced(kern, arrays: tuple, join):
    """``kern`` over the flat ``arrays``, on the team or the pool (:func:`._team.reduce`)."""
    r = _team.reduce(TEAM[kern], kern, arrays, (), TEAM_MIN, PAR_MIN, join)
    return arrays[0].dtype.type(r)


def _summed(kern, *arrays):
    return _reduced(kern, tuple(_flat(x) for x in arrays), np.sum)


def sum_(a):
    return _summed(_sum, a) if a.size else a.dtype.type(0)


def dot(a, b):
    return _summed(_dot, a, b) if a.size else a.dtype.type(0)


def sum_of_squares(a):
    return _summed(_sumsq, a) if a.size else a.dtype.type(0)


def norm_l1(a):
    return _summed(_sumabs, a) if a.size else a.dtype.type(0)


def norm_l2(a):
    return np.sqrt(sum_of_squares(a))


def sum_kahan(a):
    if a.size == 0:
        return a.dtype.type(0)
    kern = _sum_f64 if a.dtype == np.float32 else _sum_kahan
    parts = reduce_chunks(kern, (_flat(a),), (), PAR_MIN)
    if len(parts) == 1:
        return a.dtype.type(parts[0])
    return a.dtype.type(np.sum(np.array(parts, dtype=np.float64)))


def _extreme(kern, a, pick):
    return _reduced(kern, (_flat(a),), pick)


def max_(a):
    return _extreme(_max, a, np.max)


def min_(a):
    return _extreme(_min, a, np.min)


_MAXABS = {  # float dtype: (ints of its width, the mask off its sign bit, kernel)
    np.dtype(np.float32): (np.int32, 0x7FFFFFFF, _maxabs32),
    np.dtype(np.float64): (np.int64, (1 << 63) - 1, _maxabs64),
}


def norm_linf(a):
    ints, mask, kern = _MAXABS[a.dtype]
    parts = reduce_chunks(kern, (_flat(a).view(ints),), (ints(mask),), PAR_MIN)
    return np.array(max(parts), dtype=ints).view(a.dtype)[()]


@nb.njit(parallel=True, **JIT)
def _argext_team(a, sign, k):
    # _argext over k chunks (64-element aligned starts) on the team; joined as _arg joins the
    # pool's: the first chunk that saw a NaN wins, else the best value, the first on ties
    idx = np.empty(k, np.int64)
    val = np.empty(k, a.dtype)
    nan = np.empty(k, np.bool_)
    for c in nb.prange(k):
        lo, hi = chunk(c, a.size, k)
        i, v, saw = _argext(a[lo:hi], sign)
        idx[c], val[c], nan[c] = lo + i, v, saw
    best = 0
    for c in range(k):
        if nan[c]:
            return idx[c]
        if val[c] * sign > val[best] * sign:
            best = c
    return idx[best]


def _arg(a, sign):
    f = _flat(a)
    if f.size >= TEAM_MIN and _team.ok():
        return int(_team.call(_argext_team, f.size, f, f.dtype.type(sign), _par.threads_now()))
    starts = [lo for lo, _ in bounds(f.size, PAR_MIN)]
    parts = reduce_chunks(_argext, (f,), (f.dtype.type(sign),), PAR_MIN)
    best_i, best_v = None, None
    for lo, (i, v, nan) in zip(starts, parts, strict=True):
        if nan:
            return int(lo + i)
        if best_i is None or v * sign > best_v * sign:
            best_i, best_v = lo + i, v
    return int(best_i)


def argmax(a):
    return _arg(a, 1.0)


def argmin(a):
    return _arg(a, -1.0)


def normalize(a):
    n = norm_l2(a)
    if n == 0:
        raise DivisionByZeroError("normalize: the vector has L2 norm 0; expected a non-zero vector")
    return elementwise.KERNELS["div"](a, n)  # a / n, on the team from its TEAM_MIN


KERNELS.update(
    dot=dot,
    sum=sum_,
    sum_kahan=sum_kahan,
    sum_of_squares=sum_of_squares,
    max=max_,
    min=min_,
    argmax=argmax,
    argmin=argmin,
    norm_l1=norm_l1,
    norm_l2=norm_l2,
    norm_linf=norm_linf,
    normalize=normalize,
)


def warm(dtype) -> None:
    """Load the team's reductions where they will run (trueno.warmup)."""
    calls = (sum_, lambda x: dot(x, x), sum_of_squares, norm_l1, max_, min_, argmax)
    _team.warm(calls, TEAM_MIN, dtype)
