"""Row-wise kernels over the last axis (1-D = one row): softmax, log_softmax, layer_norm,
rms_norm. Exponentials (the exp polynomials of ._math, float32 and float64, FMA-evaluated,
2**k by vscalef on AVX-512 hosts) are written by a plain loop, then summed by a reassociating
loop (the polynomial itself never runs under fastmath). Many rows split over threads by rows;
one long row splits each pass over threads."""

from __future__ import annotations

import numba as nb
import numpy as np

from trueno.backends.numba_cache import drop_stale
from trueno.backends.numba_kernels import _out, _par, _team, reductions
from trueno.backends.numba_kernels._math import fexp, wide_vectors
from trueno.backends.numba_kernels._par import (
    _task,
    bounds,
    reduce_chunks,
    run_tasks,
)
from trueno.backends.numba_kernels._team import chunk
from trueno.backends.numba_kernels.elementwise import launcher
from trueno.backends.numba_kernels.reductions import _max, _sum, _sumsq
from trueno.backends.numba_kernels.stats import _sq_dev, _sum_shift

drop_stale(__file__, ("_math.py", "_team.py", "reductions.py", "stats.py"))

JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
# many rows: split over numba's OpenMP team from TEAM_MIN elements; over the pool's chunks
# (where the team is not taken) from PAR_MIN. Zen 4, 2 threads, the pool's split against one
# thread: layer_norm 0.50x at 2^17, 0.75x at 2^18, 1.29x at 2^20; rms_norm 0.47x, 0.83x, 1.09x
TEAM_MIN = 1 << 15
PAR_MIN = 1 << 20
# one row splits its three passes over the pool's chunks from here: each pass hands off, and
# below this one thread was faster (Zen 4, log_softmax, one thread / split: 67/198 us at
# 1.5e5, 495/701 at 1e6, 1211/1042 at 2e6, 3633/2246 at 4e6)
LONG_ROW_MIN = 1 << 21
# ... and over numba's OpenMP team from ROW_TEAM_MIN (three team calls)
ROW_TEAM_MIN = 1 << 16
KERNELS: dict = {}


@nb.njit(**JIT)
def _exp_shift(out, x, m):
    wide_vectors()
    for i in range(out.size):
        out[i] = fexp(x[i] - m)


@nb.njit(**JIT)
def _exp_shift_sum(out, x, m):
    wide_vectors()
    # in blocks, so each block of exponentials is summed while it is still in L1
    s = np.float32(0.0)
    n = out.size
    for lo in range(0, n, 2048):
        o = out[lo : min(lo + 2048, n)]
        _exp_shift(o, x[lo : min(lo + 2048, n)], m)
        s += _sum(o)
    return s


@nb.njit(**JIT)
def _scale_inplace(out, inv):
    # one array: no runtime alias check, so the loop stays vectorized; a multiply by 1/sum
    # (at most 1 ulp from dividing) instead of a divide per element, which issues several
    # times slower
    for i in nb.prange(out.size):
        out[i] = out[i] * inv


@nb.njit(**JIT)
def _sub2(out, a, m, lse):
    for i in nb.prange(out.size):
        out[i] = (a[i] - m) - lse


@nb.njit(**JIT)
def _softmax_rows(out, x):
    for r in nb.prange(x.shape[0]):
        o = out[r]
        m = _max(x[r])
        s = _exp_shift_sum(o, x[r], m)
        _scale_inplace(o, np.float32(1.0) / s)  # float32 / float64: the row's precision


@nb.njit(**JIT)
def _log_softmax_rows(out, x):
    for r in nb.prange(x.shape[0]):
        o = out[r]
        m = _max(x[r])
        s = _exp_shift_sum(o, x[r], m)
        _sub2(o, x[r], m, np.log(s))


@nb.njit(**JIT)
def _layer_norm_rows(out, x, gamma, beta, eps, affine):
    n = x.shape[1]
    for r in nb.prange(x.shape[0]):
        row = x[r]
        o = out[r]
        m = row[0] + _sum_shift(row, row[0]) / n
        inv = np.float32(1.0) / np.sqrt(_sq_dev(row, m) / n + eps)
        if affine:
            for i in range(n):
                o[i] = (row[i] - m) * inv * gamma[i] + beta[i]
        else:
            for i in range(n):
                o[i] = (row[i] - m) * inv


@nb.njit(**JIT)
def _rms_norm_rows(out, x, w, eps, weighted):
    n = x.shape[1]
    for r in nb.prange(x.shape[0]):
        row = x[r]
        o = out[r]
        inv = np.float32(1.0) / np.sqrt(_sumsq(row) / n + eps)
        if weighted:
            for i in range(n):
                o[i] = row[i] * inv * w[i]
        else:
            for i in range(n):
                o[i] = row[i] * inv


def _as_rows(x):
    x = np.ascontiguousarray(x)
    return x.reshape(1, -1) if x.ndim == 1 else x


ROW_KERNELS = (_softmax_rows, _log_softmax_rows, _layer_norm_rows, _rms_norm_rows)
TEAM = {kern: _team.twin(kern) for kern in ROW_KERNELS}  # rows split over the team


def _by_rows(kern, x2, out2, *params):
    """Run a row kernel: rows split over numba's OpenMP team from TEAM_MIN elements, else
    (a paused team, a fork()ed child) over the pool's chunks from PAR_MIN."""
    rows = x2.shape[0]
    if rows >= 2 and x2.size >= TEAM_MIN and _team.ok():
        _team.call(TEAM[kern], x2.size, out2, x2, *params)
        return
    if x2.size < PAR_MIN or rows < 2 or _par.threads_now() == 1:
        kern(out2, x2, *params)
        return
    chunks = bounds(rows, max(2, rows * PAR_MIN // x2.size), align=1)
    run_tasks([_task(kern, (out2[lo:hi], x2[lo:hi], *params)) for lo, hi in chunks])


@nb.njit(parallel=True, **JIT)
def _exp_shift_sum_team(out, x, m, k):
    # _exp_shift_sum over k chunks on the team, their sums summed
    parts = np.empty(k, x.dtype)
    for c in nb.prange(k):
        lo, hi = chunk(c, x.size, k)
        parts[c] = _exp_shift_sum(out[lo:hi], x[lo:hi], m)
    return _sum(parts)


# one long row's last pass, on the team from ROW_TEAM_MIN (else the pool's, from PAR_MIN)
SCALE = launcher(_scale_inplace, PAR_MIN, ROW_TEAM_MIN)
SUB2 = launcher(_sub2, PAR_MIN, ROW_TEAM_MIN)


def _one_row(x2) -> str | None:
    """How a single row's passes split: "team" (from ROW_TEAM_MIN), "pool" (from
    LONG_ROW_MIN, where the team is not taken), or None (one thread, as a row of many)."""
    if x2.shape[0] != 1:
        return None
    if x2.size >= ROW_TEAM_MIN and _team.ok():
        return "team"
    if x2.size >= LONG_ROW_MIN and _par.threads_now() > 1:
        return "pool"
    return None


def _long_row_exp(x, out, how: str):
    """out = exp(x - max(x)) for one long row, each pass split over threads; returns (m, s)."""
    t = x.dtype.type
    if how == "team":
        n, k = x.size, _par.threads_now()
        m = t(_team.call(reductions.TEAM[_max], n, x, k))
        return m, t(_team.call(_exp_shift_sum_team, n, out, x, m, k))
    m = t(np.max(np.array(reduce_chunks(_max, (x,), (), PAR_MIN), dtype=x.dtype)))
    parts = reduce_chunks(_exp_shift_sum, (out, x), (m,), PAR_MIN)
    return m, t(np.sum(np.array(parts, dtype=x.dtype)))


def softmax(x, axis=-1):
    x2 = _as_rows(x)
    out = _out.empty(x2.shape, x.dtype)
    how = _one_row(x2)
    if how is None:
        _by_rows(_softmax_rows, x2, out)
        return out.reshape(x.shape)
    o, r = out.reshape(-1), x2.reshape(-1)
    _, s = _long_row_exp(r, o, how)
    SCALE(o, (), (x.dtype.type(1) / s,))
    return out.reshape(x.shape)


def log_softmax(x, axis=-1):
    x2 = _as_rows(x)
    out = _out.empty(x2.shape, x.dtype)
    how = _one_row(x2)
    if how is None:
        _by_rows(_log_softmax_rows, x2, out)
        return out.reshape(x.shape)
    o, r = out.reshape(-1), x2.reshape(-1)
    m, s = _long_row_exp(r, o, how)
    SUB2(o, (r,), (m, x.dtype.type(np.log(s))))
    return out.reshape(x.shape)


def layer_norm(x, gamma=None, beta=None, eps=1e-5):
    x2 = _as_rows(x)
    n, t = x2.shape[1], x.dtype.type
    affine = gamma is not None or beta is not None
    gamma = np.ones(n if affine else 1, x.dtype) if gamma is None else np.ascontiguousarray(gamma)
    beta = np.zeros(n if affine else 1, x.dtype) if beta is None else np.ascontiguousarray(beta)
    out = _out.empty(x2.shape, x.dtype)
    _by_rows(_layer_norm_rows, x2, out, gamma, beta, t(eps), affine)
    return out.reshape(x.shape)


def rms_norm(x, weight=None, eps=1e-6):
    x2 = _as_rows(x)
    t = x.dtype.type
    weighted = weight is not None
    weight = np.ascontiguousarray(weight) if weighted else np.ones(1, x.dtype)
    out = _out.empty(x2.shape, x.dtype)
    _by_rows(_rms_norm_rows, x2, out, weight, t(eps), weighted)
    return out.reshape(x.shape)


KERNELS.update(softmax=softmax, log_softmax=log_softmax, layer_norm=layer_norm, rms_norm=rms_norm)


def warm(dtype) -> None:
    """Compile the entry points the one-long-row path calls from Python, and load the rows'
    team twins where they will run (trueno.warmup)."""
    x = np.linspace(-1, 1, 8, dtype=dtype)
    out = np.empty_like(x)
    m = x.dtype.type(1)
    _exp_shift_sum(out, x, m)
    _scale_inplace(out, m)
    _sub2(out, x, m, m)
    by_rows = [
        lambda x, f=f: f(x.reshape(2, -1)) for f in (softmax, log_softmax, layer_norm, rms_norm)
    ]
    _team.warm([*by_rows, softmax, log_softmax], max(TEAM_MIN, ROW_TEAM_MIN), dtype)
