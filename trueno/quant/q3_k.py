"""Q3_K: super-blocks of 256 = 16 sub-blocks of 16; ``w = d * (sc - 32) * (q - 4*(1 - h))``.

C struct (110 bytes)::

    typedef struct {
        uint8_t hmask[32];    // bit k of hmask[l] = high bit of weight 32k + l
        uint8_t qs[64];       // low 2 bits; per 128 weights: qs[l] bits 2k..2k+1 = w 32k + l
        uint8_t scales[12];   // 16 scales of 6 bits: low nibbles in bytes 0-7, top 2 bits in 8-11
        ggml_half d;
    } block_q3_K;
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import QK_K, GGMLType
from trueno.quant.base import Format, f16_bits, register


def scales_6bit(s: np.ndarray) -> np.ndarray:
    """(n, 12) bytes -> (n, 16) signed scales (6-bit value - 32)."""
    lo = np.concatenate([s[:, 0:8] & 0xF, s[:, 0:8] >> 4], axis=-1)
    hi = s[:, 8:12].reshape(-1, 1, 4) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 4, 1)
    hi = hi.reshape(-1, 16) & np.uint8(3)
    return (lo | (hi << np.uint8(4))).astype(np.int8) - np.int8(32)


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    d = f16_bits(blocks, 108)
    dl = (d * scales_6bit(blocks[:, 96:108]).astype(np.float32)).reshape(n, 16, 1)
    shift2 = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    ql = ((blocks[:, 32:96].reshape(n, 2, 1, 32) >> shift2) & np.uint8(3)).reshape(n, 16, 16)
    qh = blocks[:, 0:32].reshape(n, 1, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 1, 8, 1)
    qh = (qh.reshape(n, 16, 16) & np.uint8(1)) ^ np.uint8(1)  # offset 4 when the bit is clear
    q = (ql.astype(np.int8) - (qh << np.uint8(2)).astype(np.int8)).astype(np.float32)
    return (dl * q).reshape(n, QK_K)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    for b in range(blocks.shape[0]):
        d = f16[blocks[b, 108] | (np.int64(blocks[b, 109]) << 8)]
        for e in range(256):
            half, k, l = e // 128, (e // 32) % 4, e % 32
            j = e // 16
            lo = (np.int64(blocks[b, 96 + j % 8]) >> (4 * (j // 8))) & 15
            hi = (np.int64(blocks[b, 104 + j % 4]) >> (2 * (j // 4))) & 3
            sc = (lo | (hi << 4)) - 32
            ql = (np.int64(blocks[b, 32 + 32 * half + l]) >> (2 * k)) & 3
            h = (np.int64(blocks[b, l]) >> (e // 32)) & 1
            out[b, e] = (d * np.float32(sc)) * np.float32(ql - 4 * (1 - h))


FORMAT = register(Format(GGMLType.Q3_K, dequantize_ref, dequantize_numba))
