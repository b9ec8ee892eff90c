"""Q5_1: 32 weights per block, ``w = d * q + m`` with q 5 bits.

C struct (24 bytes)::

    typedef struct { ggml_half d; ggml_half m; uint8_t qh[4]; uint8_t qs[16]; } block_q5_1;
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import GGMLType
from trueno.quant.base import Format, f16_bits, inverse_or_zero, register
from trueno.quant.q4_0 import nibbles
from trueno.quant.q5_0 import high_bits, pack_high_bits


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    d, m = f16_bits(blocks, 0), f16_bits(blocks, 2)
    q = nibbles(blocks[:, 8:24]) | (high_bits(blocks[:, 4:8]) << np.uint8(4))
    return d * q.astype(np.float32) + m


def quantize_ref(x: np.ndarray) -> np.ndarray:
    """llama.cpp quantize_row_q5_1_ref: d = (max - min) / 31, m = min."""
    vmax = x.max(axis=-1, keepdims=True)
    vmin = x.min(axis=-1, keepdims=True)
    d = (vmax - vmin) / np.float32(31)
    inv = inverse_or_zero(d)
    q = np.trunc((x - vmin) * inv + np.float32(0.5), dtype=np.float32).astype(np.uint8).clip(0, 31)
    qs = (q[:, :16] & np.uint8(0x0F)) | (q[:, 16:] << np.uint8(4))
    f16 = np.float16
    return np.concatenate(
        [d.astype(f16).view(np.uint8), vmin.astype(f16).view(np.uint8), pack_high_bits(q), qs],
        axis=-1,
    )


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    for b in range(blocks.shape[0]):
        d = f16[blocks[b, 0] | (np.int64(blocks[b, 1]) << 8)]
        m = f16[blocks[b, 2] | (np.int64(blocks[b, 3]) << 8)]
        qh = (
            np.int64(blocks[b, 4])
            | (np.int64(blocks[b, 5]) << 8)
            | (np.int64(blocks[b, 6]) << 16)
            | (np.int64(blocks[b, 7]) << 24)
        )
        for j in range(16):
            q = np.int64(blocks[b, 8 + j])
            lo = (q & 15) | (((qh >> j) & 1) << 4)
            hi = (q >> 4) | (((qh >> (j + 16)) & 1) << 4)
            out[b, j] = d * np.float32(lo) + m
            out[b, j + 16] = d * np.float32(hi) + m


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def matvec_numba(w, x, f16, out):
    nb = x.size // 32
    for r in numba.prange(w.shape[0]):
        acc = np.float32(0)
        for b in range(nb):
            o = b * 24
            d = f16[w[r, o] | (np.int64(w[r, o + 1]) << 8)]
            m = f16[w[r, o + 2] | (np.int64(w[r, o + 3]) << 8)]
            qh = (
                np.int64(w[r, o + 4])
                | (np.int64(w[r, o + 5]) << 8)
                | (np.int64(w[r, o + 6]) << 16)
                | (np.int64(w[r, o + 7]) << 24)
            )
            s = np.float32(0)
            sx = np.float32(0)
            for j in range(16):
                q = np.int64(w[r, o + 8 + j])
                lo = (q & 15) | (((qh >> j) & 1) << 4)
                hi = (q >> 4) | (((qh >> (j + 16)) & 1) << 4)
                x0 = x[b * 32 + j]
                x1 = x[b * 32 + 16 + j]
                s += np.float32(lo) * x0 + np.float32(hi) * x1
                sx += x0 + x1
            acc += d * s + m * sx
        out[r] = acc


FORMAT = register(
    Format(GGMLType.Q5_1, dequantize_ref, dequantize_numba, quantize_ref, matvec_numba)
)
