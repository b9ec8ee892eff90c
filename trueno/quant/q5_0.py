"""Q5_0: 32 weights per block, ``w = d * (q - 16)`` with q 5 bits: a nibble plus one high bit.

C struct (22 bytes)::

    typedef struct { ggml_half d; uint8_t qh[4]; uint8_t qs[16]; } block_q5_0;
    // qh: little-endian u32, bit j = 5th bit of weight j
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import GGMLType
from trueno.quant.base import Format, f16_bits, inverse_or_zero, register, signed_absmax
from trueno.quant.q4_0 import nibbles


def high_bits(qh: np.ndarray) -> np.ndarray:
    """(n, 4) bytes -> (n, 32) bits, bit j of the little-endian u32 at column j."""
    return np.unpackbits(qh, axis=-1, bitorder="little")


def pack_high_bits(q: np.ndarray) -> np.ndarray:
    return np.packbits(q >> np.uint8(4), axis=-1, bitorder="little")


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    d = f16_bits(blocks, 0)
    q = nibbles(blocks[:, 6:22]) | (high_bits(blocks[:, 2:6]) << np.uint8(4))
    return d * (q.astype(np.int8) - np.int8(16)).astype(np.float32)


def quantize_ref(x: np.ndarray) -> np.ndarray:
    """llama.cpp quantize_row_q5_0_ref: d = (signed value of max |x|) / -16."""
    vmax = signed_absmax(x)
    d = vmax / np.float32(-16)
    inv = inverse_or_zero(d)
    q = np.trunc(x * inv + np.float32(16.5), dtype=np.float32).astype(np.uint8).clip(0, 31)
    qs = (q[:, :16] & np.uint8(0x0F)) | (q[:, 16:] << np.uint8(4))
    return np.concatenate([d.astype(np.float16).view(np.uint8), pack_high_bits(q), qs], axis=-1)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    for b in range(blocks.shape[0]):
        d = f16[blocks[b, 0] | (np.int64(blocks[b, 1]) << 8)]
        qh = (
            np.int64(blocks[b, 2])
            | (np.int64(blocks[b, 3]) << 8)
            | (np.int64(blocks[b, 4]) << 16)
            | (np.int64(blocks[b, 5]) << 24)
        )
        for j in range(16):
            q = np.int64(blocks[b, 6 + j])
            lo = (q & 15) | (((qh >> j) & 1) << 4)
            hi = (q >> 4) | (((qh >> (j + 16)) & 1) << 4)
            out[b, j] = d * np.float32(lo - 16)
            out[b, j + 16] = d * np.float32(hi - 16)


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def matvec_numba(w, x, f16, out):
    nb = x.size // 32
    for r in numba.prange(w.shape[0]):
        acc = np.float32(0)
        for b in range(nb):
            o = b * 22
            d = f16[w[r, o] | (np.int64(w[r, o + 1]) << 8)]
            qh = (
                np.int64(w[r, o + 2])
                | (np.int64(w[r, o + 3]) << 8)
                | (np.int64(w[r, o + 4]) << 16)
                | (np.int64(w[r, o + 5]) << 24)
            )
            s = np.float32(0)
            for j in range(16):
                q = np.int64(w[r, o + 6 + j])
                lo = (q & 15) | (((qh >> j) & 1) << 4)
                hi = (q >> 4) | (((qh >> (j + 16)) & 1) << 4)
                s += np.float32(lo - 16) * x[b * 32 + j] + np.float32(hi - 16) * x[b * 32 + 16 + j]
            acc += d * s
        out[r] = acc


FORMAT = register(
    Format(GGMLType.Q5_0, dequantize_ref, dequantize_numba, quantize_ref, matvec_numba)
)
