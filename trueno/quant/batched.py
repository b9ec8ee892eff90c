"""Batched fused matvecs: B activation vectors against one quantized weight, each weight row
read from memory once for all B (the row stays in L1 while its B dots run).

Each (row, vector) dot is the very row dot of :mod:`trueno.quant.fused` on the same int8
activations, so ``out[b]`` equals ``matvec(x[b])`` bit for bit; batched decode therefore gives
the tokens of a lone decode. Built per driver on first use (closures over the row dot: not
cached on disk). Import only after ``simd.available()`` said yes (as for ``fused``).
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from trueno.quant import fused, simd
from trueno.quant.fused import PREFETCH_ROWS, _prefetch_paired, quantize_activations

_PAIRED_DOTS = {
    fused.matvec_paired_q4_0: simd.paired_dot_q4_0,
    fused.matvec_paired_q4_1: simd.paired_dot_q4_1,
    fused.matvec_paired_q5_0: simd.paired_dot_q5_0,
    fused.matvec_paired_q5_1: simd.paired_dot_q5_1,
    fused.matvec_split_q8_0: simd.split_dot_q8_0,
}
_ROW_DOTS = {
    fused.matvec_q4_0: simd.row_dot_q4_0,
    fused.matvec_q4_1: simd.row_dot_q4_1,
    fused.matvec_q5_0: simd.row_dot_q5_0,
    fused.matvec_q5_1: simd.row_dot_q5_1,
    fused.matvec_q8_0: simd.row_dot_q8_0,
    fused.matvec_q4_k: simd.row_dot_q4_k,
    fused.matvec_q5_k: simd.row_dot_q5_k,
    fused.matvec_q6_k: simd.row_dot_q6_k,
}
_built: dict = {}
_local = threading.local()


def _paired(dot):
    @numba.njit(parallel=True, error_model="numpy")
    def run(qs, d, m, qh, xs_f32, xq, dx, xs, bs, out):
        n_vec = xs_f32.shape[0]
        for b in range(n_vec):
            quantize_activations(xs_f32[b], 32, xq[b], dx[b], xs[b], bs[b])
        nb = d.shape[1]
        for r in numba.prange(qs.shape[0]):
            _prefetch_paired(qs, d, m, qh, r + PREFETCH_ROWS)
            for b in range(n_vec):
                out[b, r] = dot(qs, d, m, qh, r, xq[b], dx[b], xs[b], nb)

    return run


def _plain(dot, block):
    @numba.njit(parallel=True, error_model="numpy")
    def run(w, xs_f32, xq, dx, xs, bs, out):
        n_vec = xs_f32.shape[0]
        for b in range(n_vec):
            quantize_activations(xs_f32[b], block, xq[b], dx[b], xs[b], bs[b])
        n = xq.shape[1] // block
        for r in numba.prange(w.shape[0]):
            simd.prefetch_row(w, r + PREFETCH_ROWS)
            for b in range(n_vec):
                out[b, r] = dot(w, r, xq[b], dx[b], xs[b], bs[b], n)

    return run


def kernel_for(driver, block: int):
    """The batched kernel of a fused matvec driver, or None (F16/BF16, unknown drivers)."""
    if driver not in _built:
        if driver in _PAIRED_DOTS:
            _built[driver] = _paired(_PAIRED_DOTS[driver])
        elif driver in _ROW_DOTS:
            _built[driver] = _plain(_ROW_DOTS[driver], block)
        else:
            _built[driver] = None
    return _built[driver]


def buffers(n_vec: int, n_cols: int, block: int):
    """(xq, dx, xs, bs) scratch for ``n_vec`` activation vectors, reused per thread."""
    cache = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    key = (n_cols, block)
    bufs = cache.get(key)
    if bufs is None or bufs[0].shape[0] < n_vec:
        bufs = cache[key] = (
            np.empty((n_vec, n_cols), np.int8),
            np.empty((n_vec, max(n_cols // block, 1)), np.float32),
            np.empty((n_vec, max(n_cols // 32, 1)), np.float32),
            np.empty((n_vec, max(n_cols // 16, 1)), np.int16),
        )
    return tuple(b[:n_vec] for b in bufs)


def matvecs_into(weight, xs: np.ndarray, out: np.ndarray) -> bool:
    """out[b] = W @ xs[b] for a :class:`~trueno.quant.prepared.PreparedWeight` with a fused
    quantized driver; xs (B, cols) and out (B, rows) float32 C-contiguous. False (nothing done)
    when the weight has no batched kernel."""
    driver, block = weight._driver, weight._block
    if driver is None or not block:
        return False
    run = kernel_for(driver, block)
    if run is None:
        return False
    run(*weight._args, xs, *buffers(xs.shape[0], xs.shape[1], block), out)
    return True
