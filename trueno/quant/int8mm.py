"""int8 matmul for prefill: Y = X @ W.T with the T activation rows quantized to 8-bit blocks
once (llama.cpp's vec_dot_type: one scale per 32 as Q8_0 for Q4_0..Q8_0, per 256 as Q8_K for
the K-quants) and multiplied straight against the quantized weight blocks with the integer
row dots of :mod:`trueno.quant.simd` at the weight's ISA level (on the AVX2 host:
``vpmaddubsw``/``vpmaddwd``), never dequantizing the weight to f32.

Tiling: each thread takes one contiguous run of weight rows, cut into tiles of about
:data:`TILE_BYTES`. The T quantized activation rows are cut into blocks of about
:data:`TOKEN_BLOCK_BYTES` that stay in L2 while the thread's tiles pass over them; each
weight row is decoded once per group of tokens (``simd.rows_dot``, the record's
``multi_vectors``; leftover tokens by ``simd.row_dot``). One parallel region per matmul (the
activations are quantized on the calling thread first).

Every result is bit-identical to the fused matvec's on the same int8 activations, so
``out[t]`` equals ``PreparedWeight.matvec(x[t])``.

Where :mod:`trueno.quant.int8gemm` has a tile for the weight (the re-laid Q4_0, Q4_1, Q5_0,
Q5_1, Q8_0 and the GGML blocks of Q4_K, Q5_K, Q6_K, at the avx512 / avxvnni / avx2 levels)
:func:`matmul_into` runs that register-blocked GEMM instead (:data:`GEMM`): 2-7x less CPU time
than the row dots above and than dequantize + sgemm at T = 16 and 128 on every layer shape
measured, 192 x 576 to 8192 x 2048 (BENCHMARKS.md), so :func:`wanted` takes it for every T the
caller passes (prepared.py: more than MATVEC_ROWS). Its results are not bit-identical to the
matvec's (the same integer sums for the 32-weight formats, another f32 order; the K-quants'
activations are quantized per 32 there, per 256 in the matvec).

Whether the row-dot kernel beats dequantize + sgemm depends on the type and on T:
:data:`TOKEN_RANGE` holds the crossover measured by ``benches/prefill_matmul.py`` (see there
and BENCHMARKS.md). Import only after ``simd.available()`` said yes (as for ``fused``).
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from trueno.backends.numba_cache import drop_stale
from trueno.quant import fused, int8gemm, simd
from trueno.quant.fused import quantize_activations

# the kernels inline simd.py's IR and fused.quantize_activations, which numba's stamp ignores
drop_stale(__file__, (*fused.IR_SOURCES, "fused.py"))

ENABLED = True  # False: prefill keeps dequantize + sgemm (the bench's "before" side)
GEMM = True  # False: the row-dot kernel below even where int8gemm has a tile (the bench's A/B)
TILE_BYTES = 16 << 10  # weight bytes per tile (kept in L1 while a token block passes over it)
TOKEN_BLOCK_BYTES = 192 << 10  # int8 activation bytes per token block (kept in L2, 512 KiB)

# Token counts T (lo, hi) for which the int8 matmul beat dequantize + sgemm, per weight type,
# 2 threads on the Zen 3 AVX2 host (benches/prefill_matmul.py --matmul, Llama-3.2-1B layer
# shapes, medians of interleaved rounds, host loaded). Outside the range, and for types not
# listed, prefill keeps dequantize + sgemm. Why a ceiling: with AVX2 (no VNNI) a 32-weight
# block costs vpmaddubsw + vpmaddwd per token, two multiplies per 32 MACs, the same issue
# cost as four 8-lane FMAs of sgemm; sgemm only loses while its dequantize of the whole
# weight is spread over few tokens.
# Weights with fewer elements keep dequantize + sgemm: the ranges below were measured on
# 2048-wide and larger layers, and smaller ones lost (SmolLM2 at T=128: 576x576 0.36x,
# 576x1536 0.87x, its fused 3072x576 gate/up 0.78x of prefill) where numba's parallel-region
# wake-up, up to ~50 ms on the loaded 2-core host, is not amortized.
MIN_WEIGHT_ELEMS = 1 << 22  # 2048 x 2048
TOKEN_RANGE: dict[str, tuple[int, int]] = {
    "Q4_0": (16, 128),  # T=16: 1.6-2.8x, 64: 1.3-1.8x, 128: 0.99-1.29x
    "Q4_1": (16, 128),  # T=16: 1.3-2.2x, 64: 1.0-1.7x, 128: 0.90-1.26x
    "Q5_0": (16, 64),  # T=16: 1.4-3.6x, 64: 1.2-1.6x, 128: 0.90-0.99x
    "Q5_1": (16, 32),  # T=16: 1.3-2.4x, 64: 0.80-1.02x, 128: 0.73-0.96x
    "Q8_0": (16, 64),  # T=16: 1.5-2.4x, 64: 0.88-1.21x, 128: 0.92-0.96x
    "Q4_K": (16, 64),  # T=16: 2.3-3.4x, 64: 1.2-1.4x, 128: 0.93-1.03x
    "Q5_K": (16, 32),  # T=16: 1.6-1.9x, 64: 0.63-1.02x, 128: 0.70-0.89x
    "Q6_K": (16, 64),  # T=16: 1.9-2.6x, 64: 1.0-1.1x, 128: 0.73-0.92x
}


def _make_matmul(kind: str, block: int, group: int):
    """The int8 matmul of one kernel kind (type / form / ISA level, as fused.py's drivers): a
    closure over constants only, so numba caches each copy on disk keyed by them."""
    group_kind = f"{kind}/{group}"

    @numba.njit(cache=True, parallel=True, nogil=True, error_model="numpy")
    def matmul(w, x, xq, dx, xs, bs, out, tile, tok, n_chunks):
        """out[t, r] = row r of the weight arrays ``w`` . x[t] for every token t."""
        n_tok = x.shape[0]
        for t in range(n_tok):  # on this thread: one parallel region per matmul
            quantize_activations(x[t], block, xq[t], dx[t], xs[t], bs[t])
        rows = w[0].shape[0]
        for c in numba.prange(n_chunks):  # one contiguous run of row tiles per thread
            n_tiles = (rows + tile - 1) // tile
            lo = (n_tiles * c) // n_chunks * tile
            hi = min(rows, (n_tiles * (c + 1)) // n_chunks * tile)
            for t0 in range(0, n_tok, tok):  # a block of tokens stays in L2 ...
                t1 = min(n_tok, t0 + tok)
                for r0 in range(lo, hi, tile):  # ... while the weight tiles pass, each in L1
                    for r in range(r0, min(hi, r0 + tile)):
                        b = t0
                        while b + group <= t1:  # one decode of the row per group of tokens
                            simd.rows_dot(group_kind, w, r, xq, dx, xs, bs, b, out)
                            b += group
                        while b < t1:
                            out[b, r] = simd.row_dot(kind, w, r, xq[b], dx[b], xs[b], bs[b])
                            b += 1

    return matmul


_KERNELS: dict = {}
_lock = threading.Lock()


def kernel_for(weight):
    """The int8 matmul of a prepared weight's fused kernel, or None (no fused quantized
    kernel: F32/F16/BF16, the numpy fallback types, no SIMD level)."""
    rec, level = weight.record, weight.isa
    if weight._kernel is None or rec is None or not rec.act_block or level in (None, "portable"):
        return None
    if weight.grouped:  # grouped.py's records: rows_matmul_into runs its B-vector kernel
        return None
    key = (rec.ggml_type, weight.relaid, level)
    fn = _KERNELS.get(key)
    if fn is None:
        with _lock:
            fn = _KERNELS.get(key)
            if fn is None:
                kind = f"{rec.name}/{'relaid' if weight.relaid else 'ggml'}/{level}"
                group = rec.multi_vectors if simd.body_of(kind).vectors else 1
                fn = _KERNELS[key] = _make_matmul(kind, rec.act_block, group)
    return fn


def tile_rows(row_bytes: int, tile_bytes: int | None = None) -> int:
    """Weight rows per tile: about ``tile_bytes`` (default :data:`TILE_BYTES`), at least 1."""
    return max(1, (TILE_BYTES if tile_bytes is None else tile_bytes) // max(row_bytes, 1))


def _row_bytes(weight) -> int:
    return int(sum(a.nbytes for a in weight._weights) // max(weight.shape[0], 1))


def wanted(weight, n_tokens: int) -> bool:
    """Whether the measured crossover picks the int8 matmul for this weight and T: always
    where the GEMM has a tile, else by :data:`TOKEN_RANGE` and :data:`MIN_WEIGHT_ELEMS`."""
    if ENABLED and GEMM and int8gemm.kernel_for(weight) is not None:
        return True
    lo, hi = TOKEN_RANGE.get(weight.format.name, (1, 0))
    rows, cols = weight.shape
    big = rows * cols >= MIN_WEIGHT_ELEMS
    return ENABLED and big and lo <= n_tokens <= hi and kernel_for(weight) is not None


def matmul_into(weight, xs: np.ndarray, out: np.ndarray, tile_bytes: int | None = None) -> bool:
    """out = xs @ W.T for a :class:`~trueno.quant.prepared.PreparedWeight` with a fused
    quantized kernel, by the GEMM (:data:`GEMM`) or the row dots; xs (T, cols) and out (T, rows)
    float32 C-contiguous. False (nothing done) when the weight has no int8 kernel."""
    if GEMM and int8gemm.matmul_into(weight, xs, out):
        return True
    return rows_matmul_into(weight, xs, out, tile_bytes)


def rows_matmul_into(
    weight, xs: np.ndarray, out: np.ndarray, tile_bytes: int | None = None
) -> bool:
    """out = xs @ W.T by the row dots of the fused matvec (bit-identical to T matvecs); False
    when the weight has no int8 kernel (see :func:`kernel_for`)."""
    if weight.grouped:  # grouped.py: every token a vector of its B-vector kernel
        return weight.matvecs_into(xs, out)
    run = kernel_for(weight)
    if run is None:
        return False
    bufs = fused.multi_buffers(xs.shape[0], xs.shape[1], weight.record.act_block)
    tile = tile_rows(_row_bytes(weight), tile_bytes)
    tok = max(1, TOKEN_BLOCK_BYTES // max(xs.shape[1], 1))
    run(weight._weights, xs, *bufs, out, tile, tok, numba.get_num_threads())
    return True
