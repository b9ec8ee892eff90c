"""Q8_0: 32 weights per block, ``w = d * q`` with q a signed byte.

C struct (34 bytes)::

    typedef struct { ggml_half d; int8_t qs[32]; } block_q8_0;
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import GGMLType
from trueno.quant.base import Format, f16_bits, inverse_or_zero, register


def round_away(v: np.ndarray) -> np.ndarray:
    """C roundf: halves round away from zero."""
    a = np.abs(v)
    f = np.floor(a)
    return np.sign(v) * (f + np.floor(2 * (a - f)))


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    d = f16_bits(blocks, 0)
    return blocks[:, 2:34].view(np.int8).astype(np.float32) * d


def quantize_ref(x: np.ndarray) -> np.ndarray:
    """llama.cpp quantize_row_q8_0_ref: d = max |x| / 127, q = roundf(x / d)."""
    d = np.abs(x).max(axis=-1, keepdims=True) / np.float32(127)
    inv = inverse_or_zero(d)
    qs = round_away(x * inv).astype(np.int8).view(np.uint8)
    return np.concatenate([d.astype(np.float16).view(np.uint8), qs], axis=-1)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    for b in range(blocks.shape[0]):
        d = f16[blocks[b, 0] | (np.int64(blocks[b, 1]) << 8)]
        for j in range(32):
            out[b, j] = np.float32(np.int8(blocks[b, 2 + j])) * d


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def matvec_numba(w, x, f16, out):
    nb = x.size // 32
    for r in numba.prange(w.shape[0]):
        acc = np.float32(0)
        for b in range(nb):
            o = b * 34
            d = f16[w[r, o] | (np.int64(w[r, o + 1]) << 8)]
            s = np.float32(0)
            for j in range(32):
                s += np.float32(np.int8(w[r, o + 2 + j])) * x[b * 32 + j]
            acc += d * s
        out[r] = acc


FORMAT = register(
    Format(GGMLType.Q8_0, dequantize_ref, dequantize_numba, quantize_ref, matvec_numba)
)
