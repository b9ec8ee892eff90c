"""Q4_K: super-blocks of 256 = 8 sub-blocks of 32; ``w = d*sc[s] * q - dmin*m[s]``, q 4 bits.

C struct (144 bytes)::

    typedef struct {
        ggml_half d, dmin;     // super-block scales for the 6-bit sub-block scales and mins
        uint8_t scales[12];    // 8 scales + 8 mins, 6 bits each (see scale_min)
        uint8_t qs[128];       // per 64 weights: 32 bytes, low nibbles = sub-block 2k, high 2k+1
    } block_q4_K;
"""

from __future__ import annotations

import numba
import numpy as np

from trueno.gguf.constants import QK_K, GGMLType
from trueno.quant.base import Format, f16_bits, register
from trueno.quant.kquant_ref import quantize_q4_k_ref


def scale_min(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 12) packed bytes -> (n, 8) scales, (n, 8) mins (get_scale_min_k4).

    bytes 0-3: scale j (low 6 bits), 4-7: min j (low 6 bits), 8-11: low nibble = scale j+4,
    high nibble = min j+4, whose top 2 bits are the top 2 bits of bytes j and j+4."""
    s = scales
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=-1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=-1)
    return sc, mn


def nibbles_64(qs: np.ndarray) -> np.ndarray:
    """(n, 128) bytes -> (n, 8, 32): per 32 bytes, low nibbles then high nibbles."""
    q = qs.reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    return (q & np.uint8(0x0F)).reshape(-1, 8, 32)


def sub_block_scales(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K blocks -> (n, 8, 1) sub-block scales ``d*sc`` and offsets ``dmin*m``."""
    n = blocks.shape[0]
    d, dmin = f16_bits(blocks, 0), f16_bits(blocks, 2)
    sc, mn = scale_min(blocks[:, 4:16])
    dl = (d * sc.astype(np.float32)).reshape(n, 8, 1)
    ml = (dmin * mn.astype(np.float32)).reshape(n, 8, 1)
    return dl, ml


def dequantize_ref(blocks: np.ndarray) -> np.ndarray:
    dl, ml = sub_block_scales(blocks)
    q = nibbles_64(blocks[:, 16:144]).astype(np.float32)
    return (dl * q - ml).reshape(-1, QK_K)


@numba.njit(cache=True, inline="always")
def scale_min_k4(blocks, b, o, j):
    """get_scale_min_k4 on the 12 scale bytes at blocks[b, o:o+12]."""
    if j < 4:
        return np.int64(blocks[b, o + j]) & 63, np.int64(blocks[b, o + j + 4]) & 63
    sc = (np.int64(blocks[b, o + j + 4]) & 0xF) | ((np.int64(blocks[b, o + j - 4]) >> 6) << 4)
    m = (np.int64(blocks[b, o + j + 4]) >> 4) | ((np.int64(blocks[b, o + j]) >> 6) << 4)
    return sc, m


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
            base = 16 + 32 * (s >> 1)
            for l in range(32):
                q = (np.int64(blocks[b, base + l]) >> shift) & 15
                out[b, 32 * s + l] = dl * np.float32(q) - ml


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def matvec_numba(w, x, f16, out):
    nsb = x.size // 256
    for r in numba.prange(w.shape[0]):
        acc = np.float32(0)
        for sb in range(nsb):
            o = sb * 144
            d = f16[w[r, o] | (np.int64(w[r, o + 1]) << 8)]
            dmin = f16[w[r, o + 2] | (np.int64(w[r, o + 3]) << 8)]
            for s in range(8):
                sc, m = scale_min_k4(w, r, o + 4, s)
                shift = 4 * (s & 1)
                base = o + 16 + 32 * (s >> 1)
                xs = x[sb * 256 + 32 * s : sb * 256 + 32 * s + 32]
                dot = np.float32(0)
                sx = np.float32(0)
                for l in range(32):
                    dot += np.float32((np.int64(w[r, base + l]) >> shift) & 15) * xs[l]
                    sx += xs[l]
                acc += d * np.float32(sc) * dot - dmin * np.float32(m) * sx
        out[r] = acc


FORMAT = register(
    Format(GGMLType.Q4_K, dequantize_ref, dequantize_numba, quantize_q4_k_ref, matvec_numba)
)
