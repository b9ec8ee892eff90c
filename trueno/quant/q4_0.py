"""Q4_0: 32 weights per block, ``w = d * (q - 8)`` with q a 4-bit nibble.

C struct (18 bytes)::

    typedef struct { ggml_half d; uint8_t qs[16]; } block_q4_0;
    // qs[j] low nibble = weight j, high nibble = weight j + 16
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import GGMLType
from trueno.quant.base import Format, f16_bits, inverse_or_zero, register, signed_absmax


def nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, 16) packed bytes -> (n, 32) values: low nibbles first, then high nibbles."""
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=-1)


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    d = f16_bits(blocks, 0)  # (n, 1)
    q = nibbles(blocks[:, 2:18]).astype(np.int8) - np.int8(8)
    return d * q.astype(np.float32)


def quantize_ref(x: np.ndarray) -> np.ndarray:
    """llama.cpp quantize_row_q4_0_ref: d = (signed value of max |x|) / -8."""
    vmax = signed_absmax(x)
    d = vmax / np.float32(-8)
    inv = inverse_or_zero(d)
    q = np.trunc(x * inv + np.float32(8.5), dtype=np.float32).astype(np.uint8).clip(0, 15)
    qs = q[:, :16] | (q[:, 16:] << np.uint8(4))
    return np.concatenate([d.astype(np.float16).view(np.uint8), qs], axis=-1)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    for b in range(blocks.shape[0]):
        d = f16[blocks[b, 0] | (np.int64(blocks[b, 1]) << 8)]
        for j in range(16):
            q = np.int64(blocks[b, 2 + j])
            out[b, j] = d * np.float32((q & 15) - 8)
            out[b, j + 16] = d * np.float32((q >> 4) - 8)


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def matvec_numba(w, x, f16, out):
    nb = x.size // 32
    for r in numba.prange(w.shape[0]):
        acc = np.float32(0)
        for b in range(nb):
            o = b * 18
            d = f16[w[r, o] | (np.int64(w[r, o + 1]) << 8)]
            s = np.float32(0)
            for j in range(16):
                q = np.int64(w[r, o + 2 + j])
                s += np.float32((q & 15) - 8) * x[b * 32 + j]
                s += np.float32((q >> 4) - 8) * x[b * 32 + 16 + j]
            acc += d * s
        out[r] = acc


FORMAT = register(
    Format(GGMLType.Q4_0, dequantize_ref, dequantize_numba, quantize_ref, matvec_numba)
)
