"""Fused matvec drivers: int8 activation quantization plus one parallel row loop per format
that calls the AVX2 row dots of :mod:`trueno.quant.simd`, in one call taking f32 ``x``.
Import this module only after ``simd.available()`` said yes; the portable kernels live in the
format modules."""

from __future__ import annotations

import threading
from pathlib import Path

import numba
import numpy as np

from trueno.quant import simd

_HERE = Path(__file__).resolve().parent


def drop_stale_cache(here: Path = _HERE) -> None:
    """numba stamps this module's on-disk cache with this file's mtime only, but the kernels
    inline the IR that simd.py and llvm_ir.py build: when either changed, drop the cache."""
    try:
        stamp = ",".join(
            f"{st.st_mtime_ns}:{st.st_size}"
            for st in ((here / name).stat() for name in ("simd.py", "llvm_ir.py"))
        )
        cache = here / "__pycache__"
        mark = cache / "fused.ir-sources"
        if mark.is_file() and mark.read_text() == stamp:
            return
        for old in [*cache.glob("fused.*.nbi"), *cache.glob("fused.*.nbc")]:
            old.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        mark.write_text(stamp)
    except OSError:  # a read-only install: numba then caches elsewhere, if at all
        pass


drop_stale_cache()


@numba.njit(cache=True, error_model="numpy")
def quantize_activations(x, block, xq, dx, xs, bs):
    """x f32 -> xq int8 with one scale dx per ``block`` (32: llama.cpp's Q8_0, 256: Q8_K).

    Also fills bs (int16 sums of xq per 16, as Q8_K bsums) and xs (dx * sum of xq per 32)."""
    for b in range(x.size // block):
        o = b * block
        amax = np.float32(0)
        for i in range(block):
            amax = max(amax, np.abs(x[o + i]))
        d = amax / np.float32(127)
        inv = np.float32(1) / d if d > 0 else np.float32(0)
        dx[b] = d
        for i in range(block):
            xq[o + i] = np.int8(np.rint(x[o + i] * inv))
    for j in range(x.size // 16):
        s = 0
        for i in range(16):
            s += np.int32(xq[16 * j + i])
        bs[j] = np.int16(s)
    for j in range(x.size // 32):
        xs[j] = dx[(32 * j) // block] * np.float32(np.int32(bs[2 * j]) + np.int32(bs[2 * j + 1]))


PREFETCH_ROWS = 16  # rows ahead each thread's row loop asks the caches for (measured: 8-32)


@numba.njit(cache=True, inline="always")
def _prefetch_paired(qs, d, m, qh, r):
    # the nibble / int8 rows only: prefetching the small d, m, qh rows as well cost 10-25%
    # (A/B at 262144 rows, 2 threads); the hardware prefetcher keeps up with those streams
    simd.prefetch_row(qs, r)


_local = threading.local()


def activation_buffers(n_cols: int, block: int):
    """(xq, dx, xs, bs) scratch for one activation vector, reused per thread."""
    cache = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    bufs = cache.get((n_cols, block))
    if bufs is None:
        bufs = cache[(n_cols, block)] = _new_buffers(n_cols, block)
    return bufs


def _new_buffers(n_cols: int, block: int):
    return (
        np.empty(n_cols, np.int8),
        np.empty(max(n_cols // block, 1), np.float32),
        np.empty(max(n_cols // 32, 1), np.float32),
        np.empty(max(n_cols // 16, 1), np.int16),
    )


@numba.njit(cache=True, parallel=True)
def matvec_q4_0(w, x, xq, dx, xs, bs, out):
    quantize_activations(x, 32, xq, dx, xs, bs)
    n = xq.size // 32
    for r in numba.prange(w.shape[0]):
        simd.prefetch_row(w, r + PREFETCH_ROWS)
        out[r] = simd.row_dot_q4_0(w, r, xq, dx, xs, bs, n)


@numba.njit(cache=True, parallel=True)
def matvec_q4_1(w, x, xq, dx, xs, bs, out):
    quantize_activations(x, 32, xq, dx, xs, bs)
    n = xq.size // 32
    for r in numba.prange(w.shape[0]):
        simd.prefetch_row(w, r + PREFETCH_ROWS)
        out[r] = simd.row_dot_q4_1(w, r, xq, dx, xs, bs, n)


@numba.njit(cache=True, parallel=True)
def matvec_q5_0(w, x, xq, dx, xs, bs, out):
    quantize_activations(x, 32, xq, dx, xs, bs)
    n = xq.size // 32
    for r in numba.prange(w.shape[0]):
        simd.prefetch_row(w, r + PREFETCH_ROWS)
        out[r] = simd.row_dot_q5_0(w, r, xq, dx, xs, bs, n)


@numba.njit(cache=True, parallel=True)
def matvec_q5_1(w, x, xq, dx, xs, bs, out):
    quantize_activations(x, 32, xq, dx, xs, bs)
    n = xq.size // 32
    for r in numba.prange(w.shape[0]):
        simd.prefetch_row(w, r + PREFETCH_ROWS)
        out[r] = simd.row_dot_q5_1(w, r, xq, dx, xs, bs, n)


@numba.njit(cache=True, parallel=True)
def matvec_q8_0(w, x, xq, dx, xs, bs, out):
    quantize_activations(x, 32, xq, dx, xs, bs)
    n = xq.size // 32
    for r in numba.prange(w.shape[0]):
        simd.prefetch_row(w, r + PREFETCH_ROWS)
        out[r] = simd.row_dot_q8_0(w, r, xq, dx, xs, bs, n)


@numba.njit(cache=True, parallel=True)
def matvec_q4_k(w, x, xq, dx, xs, bs, out):
    quantize_activations(x, 256, xq, dx, xs, bs)
    n = xq.size // 256
    for r in numba.prange(w.shape[0]):
        simd.prefetch_row(w, r + PREFETCH_ROWS)
        out[r] = simd.row_dot_q4_k(w, r, xq, dx, xs, bs, n)


@numba.njit(cache=True, parallel=True)
def matvec_q5_k(w, x, xq, dx, xs, bs, out):
    quantize_activations(x, 256, xq, dx, xs, bs)
    n = xq.size // 256
    for r in numba.prange(w.shape[0]):
        simd.prefetch_row(w, r + PREFETCH_ROWS)
        out[r] = simd.row_dot_q5_k(w, r, xq, dx, xs, bs, n)


@numba.njit(cache=True, parallel=True)
def matvec_q6_k(w, x, xq, dx, xs, bs, out):
    quantize_activations(x, 256, xq, dx, xs, bs)
    n = xq.size // 256
    for r in numba.prange(w.shape[0]):
        simd.prefetch_row(w, r + PREFETCH_ROWS)
        out[r] = simd.row_dot_q6_k(w, r, xq, dx, xs, bs, n)


@numba.njit(cache=True, parallel=True)
def matvec_f16(w, x, out):
    xq, xs, bs = np.empty(0, np.int8), np.empty(0, np.float32), np.empty(0, np.int16)
    n = x.size // 16
    for r in numba.prange(w.shape[0]):
        out[r] = simd.row_dot_f16(w, r, xq, x, xs, bs, n)


@numba.njit(cache=True, parallel=True)
def matvec_bf16(w, x, out):
    xq, xs, bs = np.empty(0, np.int8), np.empty(0, np.float32), np.empty(0, np.int16)
    n = x.size // 16
    for r in numba.prange(w.shape[0]):
        out[r] = simd.row_dot_bf16(w, r, xq, x, xs, bs, n)


# GGML type name -> (driver, activation block); F16/BF16 take f32 x directly (block 0)
QUANT_DRIVERS = {
    "Q4_0": (matvec_q4_0, 32),
    "Q4_1": (matvec_q4_1, 32),
    "Q5_0": (matvec_q5_0, 32),
    "Q5_1": (matvec_q5_1, 32),
    "Q8_0": (matvec_q8_0, 32),
    "Q4_K": (matvec_q4_k, 256),
    "Q5_K": (matvec_q5_k, 256),
    "Q6_K": (matvec_q6_k, 256),
}
FLOAT_DRIVERS = {"F16": matvec_f16, "BF16": matvec_bf16}


@numba.njit(cache=True, parallel=True)
def matvec_paired_q4_0(qs, d, m, qh, x, xq, dx, xs, bs, out):
    quantize_activations(x, 32, xq, dx, xs, bs)
    nb = d.shape[1]
    for r in numba.prange(qs.shape[0]):
        _prefetch_paired(qs, d, m, qh, r + PREFETCH_ROWS)
        out[r] = simd.paired_dot_q4_0(qs, d, m, qh, r, xq, dx, xs, nb)


@numba.njit(cache=True, parallel=True)
def matvec_paired_q4_1(qs, d, m, qh, x, xq, dx, xs, bs, out):
    quantize_activations(x, 32, xq, dx, xs, bs)
    nb = d.shape[1]
    for r in numba.prange(qs.shape[0]):
        _prefetch_paired(qs, d, m, qh, r + PREFETCH_ROWS)
        out[r] = simd.paired_dot_q4_1(qs, d, m, qh, r, xq, dx, xs, nb)


@numba.njit(cache=True, parallel=True)
def matvec_paired_q5_0(qs, d, m, qh, x, xq, dx, xs, bs, out):
    quantize_activations(x, 32, xq, dx, xs, bs)
    nb = d.shape[1]
    for r in numba.prange(qs.shape[0]):
        _prefetch_paired(qs, d, m, qh, r + PREFETCH_ROWS)
        out[r] = simd.paired_dot_q5_0(qs, d, m, qh, r, xq, dx, xs, nb)


@numba.njit(cache=True, parallel=True)
def matvec_paired_q5_1(qs, d, m, qh, x, xq, dx, xs, bs, out):
    quantize_activations(x, 32, xq, dx, xs, bs)
    nb = d.shape[1]
    for r in numba.prange(qs.shape[0]):
        _prefetch_paired(qs, d, m, qh, r + PREFETCH_ROWS)
        out[r] = simd.paired_dot_q5_1(qs, d, m, qh, r, xq, dx, xs, nb)


@numba.njit(cache=True, parallel=True)
def matvec_split_q8_0(qs, d, m, qh, x, xq, dx, xs, bs, out):
    quantize_activations(x, 32, xq, dx, xs, bs)
    nb = d.shape[1]
    for r in numba.prange(qs.shape[0]):
        _prefetch_paired(qs, d, m, qh, r + PREFETCH_ROWS)
        out[r] = simd.split_dot_q8_0(qs, d, m, qh, r, xq, dx, xs, nb)


PAIRED_DRIVERS = {
    "Q8_0": matvec_split_q8_0,
    "Q4_0": matvec_paired_q4_0,
    "Q4_1": matvec_paired_q4_1,
    "Q5_0": matvec_paired_q5_0,
    "Q5_1": matvec_paired_q5_1,
}
