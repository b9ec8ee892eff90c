"""Q6_K: super-blocks of 256 = 16 sub-blocks of 16; ``w = d * sc[s] * (q - 32)``, q 6 bits.

C struct (210 bytes)::

    typedef struct {
        uint8_t ql[128];      // low 4 bits; per 128 weights: ql[l] lo = w l, hi = w l+64,
                              //                              ql[l+32] lo = w l+32, hi = w l+96
        uint8_t qh[64];       // high 2 bits; per 128 weights: qh[l] bits 2k..2k+1 = w l+32k
        int8_t  scales[16];   // one per 16 weights
        ggml_half d;
    } block_q6_K;
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import QK_K, GGMLType
from trueno.quant.base import Format, f16_bits, register
from trueno.quant.kquant_ref import quantize_q6_k_ref


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    d = f16_bits(blocks, 208)
    sc = blocks[:, 192:208].view(np.int8).astype(np.float32)
    dl = (d * sc).reshape(n, 16, 1)
    ql = blocks[:, 0:128].reshape(n, 2, 1, 64) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
    ql = (ql & np.uint8(0x0F)).reshape(n, 8, 32)
    qh = blocks[:, 128:192].reshape(n, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(
        1, 1, 4, 1
    )
    qh = (qh & np.uint8(3)).reshape(n, 8, 32)
    q = (ql | (qh << np.uint8(4))).astype(np.int8) - np.int8(32)
    return (dl * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, QK_K)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    for b in range(blocks.shape[0]):
        d = f16[blocks[b, 208] | (np.int64(blocks[b, 209]) << 8)]
        for half in range(2):
            for k in range(4):
                for l in range(32):
                    e = 128 * half + 32 * k + l
                    ql = np.int64(blocks[b, 64 * half + 32 * (k & 1) + l]) >> (4 * (k >> 1))
                    qh = np.int64(blocks[b, 128 + 32 * half + l]) >> (2 * k)
                    q = ((ql & 15) | ((qh & 3) << 4)) - 32
                    sc = np.float32(np.int8(blocks[b, 192 + e // 16]))
                    out[b, e] = (d * sc) * np.float32(q)


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def matvec_numba(w, x, f16, out):
    nsb = x.size // 256
    for r in numba.prange(w.shape[0]):
        acc = np.float32(0)
        for sb in range(nsb):
            o = sb * 210
            d = f16[w[r, o + 208] | (np.int64(w[r, o + 209]) << 8)]
            for half in range(2):
                for k in range(4):
                    for h in range(2):
                        e0 = 128 * half + 32 * k + 16 * h
                        dot = np.float32(0)
                        for l in range(16 * h, 16 * h + 16):
                            ql = np.int64(w[r, o + 64 * half + 32 * (k & 1) + l]) >> (4 * (k >> 1))
                            qh = np.int64(w[r, o + 128 + 32 * half + l]) >> (2 * k)
                            q = ((ql & 15) | ((qh & 3) << 4)) - 32
                            dot += np.float32(q) * x[sb * 256 + 128 * half + 32 * k + l]
                        acc += d * np.float32(np.int8(w[r, o + 192 + e0 // 16])) * dot
        out[r] = acc


FORMAT = register(
    Format(GGMLType.Q6_K, dequantize_ref, dequantize_numba, quantize_q6_k_ref, matvec_numba)
)
