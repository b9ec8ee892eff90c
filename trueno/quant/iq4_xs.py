"""IQ4_XS: super-blocks of 256 = 8 sub-blocks of 32 with 6-bit scales; IQ4_NL's grid.

C struct (136 bytes)::

    typedef struct {
        ggml_half d;
        uint16_t scales_h;     // top 2 bits of the 8 scales, 2 bits each
        uint8_t scales_l[4];   // low 4 bits of the 8 scales, nibbles
        uint8_t qs[128];       // per 32 weights: 16 bytes, low nibbles then high nibbles
    } block_iq4_xs;
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import QK_K, GGMLType
from trueno.quant.base import Format, f16_bits, register, u16_field
from trueno.quant.iq4_nl import KVALUES
from trueno.quant.q4_0 import nibbles


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    d = f16_bits(blocks, 0)
    sh = u16_field(blocks, 2)  # (n, 1)
    sl = blocks[:, 4:8]
    lo = np.stack([sl & 0xF, sl >> 4], axis=-1).reshape(n, 8)
    hi = ((sh >> (2 * np.arange(8, dtype=np.uint16))) & 3).astype(np.uint8)
    sc = (lo | (hi << np.uint8(4))).astype(np.int8) - np.int8(32)
    dl = (d * sc.astype(np.float32)).reshape(n, 8, 1)
    q = nibbles(blocks[:, 8:136].reshape(n * 8, 16)).reshape(n, 8, 32)
    return (dl * KVALUES[q].astype(np.float32)).reshape(n, QK_K)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    kv = np.array(
        [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32
    )
    for b in range(blocks.shape[0]):
        d = f16[blocks[b, 0] | (np.int64(blocks[b, 1]) << 8)]
        sh = np.int64(blocks[b, 2]) | (np.int64(blocks[b, 3]) << 8)
        for s in range(8):
            lo = (np.int64(blocks[b, 4 + s // 2]) >> (4 * (s % 2))) & 15
            sc = (lo | (((sh >> (2 * s)) & 3) << 4)) - 32
            dl = d * np.float32(sc)
            for j in range(16):
                q = np.int64(blocks[b, 8 + 16 * s + j])
                out[b, 32 * s + j] = dl * kv[q & 15]
                out[b, 32 * s + j + 16] = dl * kv[q >> 4]


FORMAT = register(Format(GGMLType.IQ4_XS, dequantize_ref, dequantize_numba))
