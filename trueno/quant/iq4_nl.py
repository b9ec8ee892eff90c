"""IQ4_NL: 32 weights per block, ``w = d * KVALUES[q]`` with q a 4-bit index (non-linear grid).

C struct (18 bytes)::

    typedef struct { ggml_half d; uint8_t qs[16]; } block_iq4_nl;  // nibbles as Q4_0
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import GGMLType
from trueno.quant.base import Format, f16_bits, register
from trueno.quant.q4_0 import nibbles

KVALUES = np.array(
    [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int8
)


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    d = f16_bits(blocks, 0)
    return d * KVALUES[nibbles(blocks[:, 2:18])].astype(np.float32)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    kv = np.array(
        [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32
    )
    for b in range(blocks.shape[0]):
        d = f16[blocks[b, 0] | (np.int64(blocks[b, 1]) << 8)]
        for j in range(16):
            q = np.int64(blocks[b, 2 + j])
            out[b, j] = d * kv[q & 15]
            out[b, j + 16] = d * kv[q >> 4]


FORMAT = register(Format(GGMLType.IQ4_NL, dequantize_ref, dequantize_numba))
