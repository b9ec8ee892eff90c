"""Q5_K: like Q4_K with a 5th bit per weight; ``w = d*sc[s] * q - dmin*m[s]``, q 5 bits.

C struct (176 bytes)::

    typedef struct {
        ggml_half d, dmin;
        uint8_t scales[12];    // as Q4_K
        uint8_t qh[32];        // bit s of qh[l] = 5th bit of weight l of sub-block s
        uint8_t qs[128];       // as Q4_K
    } block_q5_K;
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import QK_K, GGMLType
from trueno.quant.base import Format, register
from trueno.quant.kquant_ref import quantize_q5_k_ref
from trueno.quant.q4_k import nibbles_64, scale_min_k4, sub_block_scales


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    dl, ml = sub_block_scales(blocks)
    qh = blocks[:, 16:48].reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)
    q = nibbles_64(blocks[:, 48:176]) | ((qh & np.uint8(1)) << np.uint8(4))
    return (dl * q.astype(np.float32) - ml).reshape(n, QK_K)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_numba(blocks, f16, out):
    for b in range(blocks.shape[0]):
        d = f16[blocks[b, 0] | (np.int64(blocks[b, 1]) << 8)]
        dmin = f16[blocks[b, 2] | (np.int64(blocks[b, 3]) << 8)]
        for s in range(8):
            sc, m = scale_min_k4(blocks, b, 4, s)
            dl = d * np.float32(sc)
            ml = dmin * np.float32(m)
            shift = 4 * (s & 1)
            base = 48 + 32 * (s >> 1)
            for l in range(32):
                q = ((np.int64(blocks[b, base + l]) >> shift) & 15) | (
                    ((np.int64(blocks[b, 16 + l]) >> s) & 1) << 4
                )
                out[b, 32 * s + l] = dl * np.float32(q) - ml


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def matvec_numba(w, x, f16, out):
    nsb = x.size // 256
    for r in numba.prange(w.shape[0]):
        acc = np.float32(0)
        for sb in range(nsb):
            o = sb * 176
            d = f16[w[r, o] | (np.int64(w[r, o + 1]) << 8)]
            dmin = f16[w[r, o + 2] | (np.int64(w[r, o + 3]) << 8)]
            for s in range(8):
                sc, m = scale_min_k4(w, r, o + 4, s)
                shift = 4 * (s & 1)
                base = o + 48 + 32 * (s >> 1)
                xs = x[sb * 256 + 32 * s : sb * 256 + 32 * s + 32]
                dot = np.float32(0)
                sx = np.float32(0)
                for l in range(32):
                    q = ((np.int64(w[r, base + l]) >> shift) & 15) | (
                        ((np.int64(w[r, o + 16 + l]) >> s) & 1) << 4
                    )
                    dot += np.float32(q) * xs[l]
                    sx += xs[l]
                acc += d * np.float32(sc) * dot - dmin * np.float32(m) * sx
        out[r] = acc


FORMAT = register(
    Format(GGMLType.Q5_K, dequantize_ref, dequantize_numba, quantize_q5_k_ref, matvec_numba)
)
