"""int8 matmul for prefill: Y = X @ W.T with the T activation rows quantized to 8-bit blocks
once (llama.cpp's vec_dot_type: one scale per 32 as Q8_0 for Q4_0..Q8_0, per 256 as Q8_K for
the K-quants) and multiplied straight against the quantized weight blocks with the AVX2
integer row dots of :mod:`trueno.quant.simd` (``vpmaddubsw``/``vpmaddwd``), never
dequantizing the weight to f32.

Tiling: each thread takes one contiguous run of weight rows, cut into tiles of about
:data:`TILE_BYTES`. The T quantized activation rows are cut into blocks of about
:data:`TOKEN_BLOCK_BYTES` that stay in L2 while the thread's tiles pass over them; a tile
stays in L1 while the block's tokens pass over it (token outer, tile rows inner, so one int8
activation row stays in L1 for the tile's dots). One parallel region per matmul (the
activations are quantized on the calling thread first).

Each (row, token) dot is the very row dot of the fused matvec on the same int8 activations,
so ``out[t]`` equals ``PreparedWeight.matvec(x[t])`` bit for bit.

Whether this beats dequantize + sgemm depends on the type and on T: :data:`TOKEN_RANGE` holds
the crossover measured by ``benches/prefill_matmul.py`` (see there and BENCHMARKS.md). Import
only after ``simd.available()`` said yes (as for ``fused``).
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from trueno.quant import simd
from trueno.quant.batched import buffers
from trueno.quant.fused import quantize_activations

_HERE = Path(__file__).resolve().parent

ENABLED = True  # False: prefill keeps dequantize + sgemm (the bench's "before" side)
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

PAIRED_KINDS = {"Q4_0": 0, "Q4_1": 1, "Q5_0": 2, "Q5_1": 3, "Q8_0": 4}  # relayout.py layout
PLAIN_KINDS = {  # GGML layout: the K-quants, and the legacy types kept with relayout=False
    "Q4_0": 0, "Q4_1": 1, "Q5_0": 2, "Q5_1": 3, "Q8_0": 4, "Q4_K": 5, "Q5_K": 6, "Q6_K": 7,
}  # fmt: skip


def _drop_stale_cache(here: Path = _HERE) -> None:
    """As fused.drop_stale_cache, for this module's on-disk cache: the kernels inline the IR
    of simd.py / llvm_ir.py and fused.quantize_activations, which numba's stamp ignores."""
    try:
        stamp = ",".join(
            f"{st.st_mtime_ns}:{st.st_size}"
            for st in ((here / n).stat() for n in ("simd.py", "llvm_ir.py", "fused.py"))
        )
        cache = here / "__pycache__"
        mark = cache / "int8mm.ir-sources"
        if mark.is_file() and mark.read_text() == stamp:
            return
        for old in [*cache.glob("int8mm.*.nbi"), *cache.glob("int8mm.*.nbc")]:
            old.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        mark.write_text(stamp)
    except OSError:  # a read-only install: numba then caches elsewhere, if at all
        pass


_drop_stale_cache()


# One kernel per layout with the type as a run-time ``kind`` (a branch the predictor learns at
# once, next to a row dot of hundreds of cycles): one compile, cached on disk, for all types.


@numba.njit(cache=True, error_model="numpy")
def quantize_rows(x, block, xq, dx, xs, bs):
    """Every row of x to int8 blocks (fused.quantize_activations per row), on this thread:
    a parallel region of its own would cost one more thread wake-up per matmul."""
    for t in range(x.shape[0]):
        quantize_activations(x[t], block, xq[t], dx[t], xs[t], bs[t])


@numba.njit(cache=True, inline="always")
def _chunk(rows, tile, n_chunks, c):
    """Rows [lo, hi) of chunk c: whole tiles, chunks as even as tiles allow."""
    n_tiles = (rows + tile - 1) // tile
    lo = (n_tiles * c) // n_chunks * tile
    hi = min(rows, (n_tiles * (c + 1)) // n_chunks * tile)
    return lo, hi


@numba.njit(cache=True, parallel=True, error_model="numpy")
def matmul_paired(kind, qs, d, m, qh, x, xq, dx, xs, bs, out, tile, tok, n_chunks):
    """out[t, r] = row r of the paired weight . x[t], for kind in PAIRED_KINDS."""
    quantize_rows(x, 32, xq, dx, xs, bs)
    n_tok, nb, rows = x.shape[0], d.shape[1], qs.shape[0]
    for c in numba.prange(n_chunks):  # one contiguous run of row tiles per thread
        lo, hi = _chunk(rows, tile, n_chunks, c)
        for t0 in range(0, n_tok, tok):  # a block of tokens stays in L2 ...
            t1 = min(n_tok, t0 + tok)
            for r0 in range(lo, hi, tile):  # ... while the weight tiles pass, each in L1
                r1 = min(hi, r0 + tile)
                for t in range(t0, t1):
                    a, s, v = xq[t], dx[t], xs[t]
                    for r in range(r0, r1):
                        if kind == 0:
                            y = simd.paired_dot_q4_0(qs, d, m, qh, r, a, s, v, nb)
                        elif kind == 1:
                            y = simd.paired_dot_q4_1(qs, d, m, qh, r, a, s, v, nb)
                        elif kind == 2:
                            y = simd.paired_dot_q5_0(qs, d, m, qh, r, a, s, v, nb)
                        elif kind == 3:
                            y = simd.paired_dot_q5_1(qs, d, m, qh, r, a, s, v, nb)
                        else:
                            y = simd.split_dot_q8_0(qs, d, m, qh, r, a, s, v, nb)
                        out[t, r] = y


@numba.njit(cache=True, parallel=True, error_model="numpy")
def matmul_plain(kind, w, x, xq, dx, xs, bs, out, tile, tok, n_chunks):
    """out[t, r] = GGML row r of w . x[t], for kind in PLAIN_KINDS."""
    block = 256 if kind >= 5 else 32
    quantize_rows(x, block, xq, dx, xs, bs)
    n_tok, n, rows = x.shape[0], xq.shape[1] // block, w.shape[0]
    for c in numba.prange(n_chunks):
        lo, hi = _chunk(rows, tile, n_chunks, c)
        for t0 in range(0, n_tok, tok):
            t1 = min(n_tok, t0 + tok)
            for r0 in range(lo, hi, tile):
                r1 = min(hi, r0 + tile)
                for t in range(t0, t1):
                    a, s, v, b = xq[t], dx[t], xs[t], bs[t]
                    for r in range(r0, r1):
                        if kind == 0:
                            y = simd.row_dot_q4_0(w, r, a, s, v, b, n)
                        elif kind == 1:
                            y = simd.row_dot_q4_1(w, r, a, s, v, b, n)
                        elif kind == 2:
                            y = simd.row_dot_q5_0(w, r, a, s, v, b, n)
                        elif kind == 3:
                            y = simd.row_dot_q5_1(w, r, a, s, v, b, n)
                        elif kind == 4:
                            y = simd.row_dot_q8_0(w, r, a, s, v, b, n)
                        elif kind == 5:
                            y = simd.row_dot_q4_k(w, r, a, s, v, b, n)
                        elif kind == 6:
                            y = simd.row_dot_q5_k(w, r, a, s, v, b, n)
                        else:
                            y = simd.row_dot_q6_k(w, r, a, s, v, b, n)
                        out[t, r] = y


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
    rows, cols = weight.shape
    big = rows * cols >= MIN_WEIGHT_ELEMS
    return ENABLED and big and lo <= n_tokens <= hi and weight._block > 0


def matmul_into(weight, xs: np.ndarray, out: np.ndarray, tile_bytes: int | None = None) -> bool:
    """out = xs @ W.T for a :class:`~trueno.quant.prepared.PreparedWeight` with a fused
    quantized driver; xs (T, cols) and out (T, rows) float32 C-contiguous. False (nothing
    done) when the weight has no int8 kernel (F16/BF16/F32, no AVX2, unfused types)."""
    name, block = weight.format.name, weight._block
    if weight._driver is None or not block:
        return False
    bufs = buffers(xs.shape[0], xs.shape[1], block)
    tile = tile_rows(_row_bytes(weight), tile_bytes)
    tok = max(1, TOKEN_BLOCK_BYTES // max(xs.shape[1], 1))
    n_chunks = numba.get_num_threads()  # one run of row tiles per thread
    if weight._paired is not None and name in PAIRED_KINDS:
        matmul_paired(PAIRED_KINDS[name], *weight._args, xs, *bufs, out, tile, tok, n_chunks)
    elif weight._paired is None and name in PLAIN_KINDS:
        matmul_plain(PLAIN_KINDS[name], *weight._args, xs, *bufs, out, tile, tok, n_chunks)
    else:
        return False
    return True
