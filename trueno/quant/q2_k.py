"""Q2_K: super-blocks of 256 = 16 sub-blocks of 16; ``w = d*(sc & 15) * q - dmin*(sc >> 4)``.

C struct (84 bytes)::

    typedef struct {
        uint8_t scales[16];   // low nibble: scale, high nibble: min, per 16 weights
        uint8_t qs[64];       // 2 bits; per 128 weights: qs[l] bits 2k..2k+1 = weight 32k + l
        ggml_half d, dmin;
    } block_q2_K;
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import QK_K, GGMLType
from trueno.quant.base import Format, f16_bits, register


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    sc = blocks[:, 0:16]
    d, dmin = f16_bits(blocks, 80), f16_bits(blocks, 82)
    dl = (d * (sc & 0xF).astype(np.float32)).reshape(n, 16, 1)
    ml = (dmin * (sc >> 4).astype(np.float32)).reshape(n, 16, 1)
    shift = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    q = (blocks[:, 16:80].reshape(n, 2, 1, 32) >> shift) & np.uint8(3)
    q = q.reshape(n, 16, 16).astype(np.float32)
    return (dl * q - ml).reshape(n, QK_K)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    for b in range(blocks.shape[0]):
        d = f16[blocks[b, 80] | (np.int64(blocks[b, 81]) << 8)]
        dmin = f16[blocks[b, 82] | (np.int64(blocks[b, 83]) << 8)]
        for e in range(256):
            half, k, l = e // 128, (e // 32) % 4, e % 32
            sc = np.int64(blocks[b, e // 16])
            q = (np.int64(blocks[b, 16 + 32 * half + l]) >> (2 * k)) & 3
            out[b, e] = (d * np.float32(sc & 15)) * np.float32(q) - dmin * np.float32(sc >> 4)


FORMAT = register(Format(GGMLType.Q2_K, dequantize_ref, dequantize_numba))
