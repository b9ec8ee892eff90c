"""Q8_K: the activation format of the K-quant dot products; ``w = d * q``.

C struct (292 bytes)::

    typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } block_q8_K;
    // bsums[j] = sum of qs[16j : 16j + 16]
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import GGMLType
from trueno.quant.base import Format, register, signed_absmax


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    d = blocks[:, 0:4].copy().view(np.float32)
    return d * blocks[:, 4:260].view(np.int8).astype(np.float32)


def quantize_ref(x: np.ndarray) -> np.ndarray:
    """llama.cpp quantize_row_q8_K_ref: d = (signed max |x|) / -127, q = nearest(x / d)."""
    vmax = signed_absmax(x)
    with np.errstate(divide="ignore"):
        inv = np.where(vmax == 0, np.float32(0), np.float32(-127) / vmax)
    q = np.minimum(np.rint(x * inv), 127).astype(np.int8)
    d = np.where(vmax == 0, np.float32(0), np.float32(1) / inv).astype(np.float32)
    bsums = q.reshape(-1, 16, 16).astype(np.int16).sum(axis=-1, dtype=np.int16)
    return np.concatenate([d.view(np.uint8), q.view(np.uint8), bsums.view(np.uint8)], axis=-1)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    for b in range(blocks.shape[0]):
        d = blocks[b, 0:4].copy().view(np.float32)[0]
        for j in range(256):
            out[b, j] = d * np.float32(np.int8(blocks[b, 4 + j]))


FORMAT = register(Format(GGMLType.Q8_K, dequantize_ref, dequantize_numba, quantize_ref))
