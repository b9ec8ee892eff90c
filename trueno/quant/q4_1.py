"""Q4_1: 32 weights per block, ``w = d * q + m`` with q a 4-bit nibble.

C struct (20 bytes)::

    typedef struct { ggml_half d; ggml_half m; uint8_t qs[16]; } block_q4_1;
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import GGMLType
from trueno.quant.base import Format, f16_bits, inverse_or_zero, register
from trueno.quant.q4_0 import nibbles


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    d, m = f16_bits(blocks, 0), f16_bits(blocks, 2)
    q = nibbles(blocks[:, 4:20]).astype(np.float32)
    return d * q + m


def quantize_ref(x: np.ndarray) -> np.ndarray:
    """llama.cpp quantize_row_q4_1_ref: d = (max - min) / 15, m = min."""
    vmax = x.max(axis=-1, keepdims=True)
    vmin = x.min(axis=-1, keepdims=True)
    d = (vmax - vmin) / np.float32(15)
    inv = inverse_or_zero(d)
    q = np.trunc((x - vmin) * inv + np.float32(0.5), dtype=np.float32).astype(np.uint8).clip(0, 15)
    qs = q[:, :16] | (q[:, 16:] << np.uint8(4))
    f16 = np.float16
    return np.concatenate(
        [d.astype(f16).view(np.uint8), vmin.astype(f16).view(np.uint8), qs], axis=-1
    )


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    for b in range(blocks.shape[0]):
        d = f16[blocks[b, 0] | (np.int64(blocks[b, 1]) << 8)]
        m = f16[blocks[b, 2] | (np.int64(blocks[b, 3]) << 8)]
        for j in range(16):
            q = np.int64(blocks[b, 4 + j])
            out[b, j] = d * np.float32(q & 15) + m
            out[b, j + 16] = d * np.float32(q >> 4) + m


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def matvec_numba(w, x, f16, out):
    nb = x.size // 32
    for r in numba.prange(w.shape[0]):
        acc = np.float32(0)
        for b in range(nb):
            o = b * 20
            d = f16[w[r, o] | (np.int64(w[r, o + 1]) << 8)]
            m = f16[w[r, o + 2] | (np.int64(w[r, o + 3]) << 8)]
            s = np.float32(0)
            sx = np.float32(0)
            for j in range(16):
                q = np.int64(w[r, o + 4 + j])
                x0 = x[b * 32 + j]
                x1 = x[b * 32 + 16 + j]
                s += np.float32(q & 15) * x0 + np.float32(q >> 4) * x1
                sx += x0 + x1
            acc += d * s + m * sx
        out[r] = acc


FORMAT = register(
    Format(GGMLType.Q4_1, dequantize_ref, dequantize_numba, quantize_ref, matvec_numba)
)
