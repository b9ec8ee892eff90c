"""int8 matmul for prefill: Y = X @ W.T with the T activation rows quantized to 8-bit blocks
once (llama.cpp's vec_dot_type: one scale per 32 as Q8_0 for Q4_0..Q8_0, per 256 as Q8_K for
the K-quants) and multiplied straight against the quantized weight blocks with the AVX2
integer row dots of :mod:`trueno.quant.simd` (``vpmaddubsw``/``vpmaddwd``), never
dequantizing the weight to f32.

Tiling: the weight rows are cut into tiles of about :data:`TILE_BYTES`; each tile stays in
the core's L1/L2 while all T activation rows pass over it (activation row outer, tile rows
inner, so one int8 activation row stays in L1 for the tile's dots). Tiles are spread over
numba's threads. Each (row, token) dot is the very row dot of the fused matvec on the same
int8 activations, so ``out[t]`` equals ``PreparedWeight.matvec(x[t])`` bit for bit.

Whether this beats dequantize + sgemm depends on the type and on T: :data:`TOKEN_RANGE` holds
the crossover measured by ``benches/prefill_matmul.py`` (see there and BENCHMARKS.md). Import
only after ``simd.available()`` said yes (as for ``fused``).
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from trueno.quant.batched import _PAIRED_DOTS, _ROW_DOTS, buffers
from trueno.quant.fused import quantize_activations

ENABLED = True  # False: prefill keeps dequantize + sgemm (the bench's "before" side)
TILE_BYTES = 16 << 10  # weight bytes per tile (kept in L1 while T activation rows pass over)

# Token counts T (lo, hi) for which the int8 matmul beat dequantize + sgemm, per weight type,
# 2 threads on the Zen 3 AVX2 host (benches/prefill_matmul.py --matmul, Llama-3.2-1B layer
# shapes, medians of interleaved rounds, host loaded). Outside the range, and for types not
# listed, prefill keeps dequantize + sgemm. Why a ceiling: with AVX2 (no VNNI) a 32-weight
# block costs vpmaddubsw + vpmaddwd per token, two multiplies per 32 MACs, the same issue
# cost as four 8-lane FMAs of sgemm; sgemm only loses while its dequantize of the whole
# weight is spread over few tokens.
TOKEN_RANGE: dict[str, tuple[int, int]] = {
    "Q4_0": (16, 64),
    "Q4_1": (16, 64),
    "Q5_0": (16, 64),
    "Q5_1": (16, 64),
    "Q8_0": (16, 64),
    "Q4_K": (16, 64),
    "Q5_K": (16, 64),
    "Q6_K": (16, 64),
}

_built: dict = {}
_lock = threading.Lock()


def _paired(dot):
    @numba.njit(parallel=True, error_model="numpy")
    def run(qs, d, m, qh, x, xq, dx, xs, bs, out, tile):
        n_tok = x.shape[0]
        for t in numba.prange(n_tok):
            quantize_activations(x[t], 32, xq[t], dx[t], xs[t], bs[t])
        nb = d.shape[1]
        rows = qs.shape[0]
        for k in numba.prange((rows + tile - 1) // tile):
            r0 = k * tile
            r1 = min(rows, r0 + tile)
            for t in range(n_tok):
                for r in range(r0, r1):
                    out[t, r] = dot(qs, d, m, qh, r, xq[t], dx[t], xs[t], nb)

    return run


def _plain(dot, block):
    @numba.njit(parallel=True, error_model="numpy")
    def run(w, x, xq, dx, xs, bs, out, tile):
        n_tok = x.shape[0]
        for t in numba.prange(n_tok):
            quantize_activations(x[t], block, xq[t], dx[t], xs[t], bs[t])
        n = xq.shape[1] // block
        rows = w.shape[0]
        for k in numba.prange((rows + tile - 1) // tile):
            r0 = k * tile
            r1 = min(rows, r0 + tile)
            for t in range(n_tok):
                for r in range(r0, r1):
                    out[t, r] = dot(w, r, xq[t], dx[t], xs[t], bs[t], n)

    return run


def kernel_for(driver, block: int):
    """The int8 matmul kernel of a fused matvec driver, or None (F16/BF16, unknown drivers).
    Built on first use (a closure over the row dot: not cached on disk)."""
    with _lock:
        if driver not in _built:
            if driver in _PAIRED_DOTS:
                _built[driver] = _paired(_PAIRED_DOTS[driver])
            elif driver in _ROW_DOTS:
                _built[driver] = _plain(_ROW_DOTS[driver], block)
            else:
                _built[driver] = None
        return _built[driver]


def tile_rows(row_bytes: int, tile_bytes: int | None = None) -> int:
    """Weight rows per tile: about ``tile_bytes`` (default :data:`TILE_BYTES`), at least 1."""
    return max(1, (TILE_BYTES if tile_bytes is None else tile_bytes) // max(row_bytes, 1))


def _row_bytes(weight) -> int:
    if weight._paired is not None:
        return int(weight.nbytes // max(weight.shape[0], 1))
    return int(weight.blocks.shape[1])


def wanted(weight, n_tokens: int) -> bool:
    """Whether the measured crossover picks the int8 matmul for this weight and T."""
    lo, hi = TOKEN_RANGE.get(weight.format.name, (1, 0))
    return ENABLED and lo <= n_tokens <= hi and weight._block > 0


def matmul_into(weight, xs: np.ndarray, out: np.ndarray, tile_bytes: int | None = None) -> bool:
    """out = xs @ W.T for a :class:`~trueno.quant.prepared.PreparedWeight` with a fused
    quantized driver; xs (T, cols) and out (T, rows) float32 C-contiguous. False (nothing
    done) when the weight has no int8 kernel."""
    driver, block = weight._driver, weight._block
    if driver is None or not block:
        return False
    run = kernel_for(driver, block)
    if run is None:
        return False
    tile = tile_rows(_row_bytes(weight), tile_bytes)
    run(*weight._args, xs, *buffers(xs.shape[0], xs.shape[1], block), out, tile)
    return True
