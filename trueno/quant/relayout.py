"""Kernel-friendly layout of the 32-weight formats (Q4_0, Q4_1, Q5_0, Q5_1; Q8_0 only has
its scales split out), the ``relayout`` of their kernel records (kernels.py).

GGML interleaves each block's f16 scale with its 16 nibble bytes. The AVX2 kernel wants the
scales in their own arrays (8 converted by one vcvtph2ps) and the nibbles of two neighbouring
blocks in one 32-byte load. Per row (nb blocks):

- ``qs``: (rows, 32 * (nb // 2) + 16 * (nb % 2)) bytes; pair k's byte j holds weight j of block
  2k in its low nibble and weight j of block 2k+1 in its high nibble; an odd last block keeps
  GGML's packing (byte j: weight j low, weight j + 16 high).
- ``d``, ``m``: (rows, nb) uint16 f16 bits (m empty for Q4_0/Q5_0).
- ``qh``: (rows, nb) uint32 5th bits (empty for Q4_*). The two words of a pair are one u64
  whose bit ``POS_A[j]`` / ``POS_B[j]`` is the 5th bit of weight j of block 2k / 2k+1: placed
  so that, broadcast to 8 dwords and shifted right by (0,0,1,1,2,2,3,3) (block 2k) or left by
  (4,4,3,3,2,2,1,1) (block 2k+1), byte lane j holds its bit at 0x10. An odd last block keeps
  GGML's word. Same bytes as the GGML blocks, rearranged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from trueno.errors import UnsupportedError
from trueno.gguf.constants import GGMLType
from trueno.quant.base import F16_TO_F32
from trueno.quant.kernels import RECORDS
from trueno.quant.q4_0 import nibbles

_J = np.arange(32)
POS_B = 32 * ((_J // 4) % 2) + 8 * (_J % 4) + _J // 8  # u64 bit of block 2k+1's weight j
POS_A = POS_B + 4  # ... and of block 2k's weight j


def _layout(name: str) -> tuple[int, bool, bool]:
    """(block bytes, has min, has 5th bits) of a type the kernel records re-lay."""
    rec = RECORDS[GGMLType[name]]
    if rec.relayout is None:
        raise UnsupportedError(f"{name} has no re-laid form (kernels.RECORDS)")
    return rec.block_bytes, rec.has_min, rec.has_high


@dataclass(frozen=True)
class PairedBlocks:
    qs: np.ndarray
    d: np.ndarray
    m: np.ndarray
    qh: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.qs.nbytes + self.d.nbytes + self.m.nbytes + self.qh.nbytes


def pair_blocks(rows: np.ndarray, name: str) -> PairedBlocks:
    """(rows, row_bytes) GGML blocks -> :class:`PairedBlocks`."""
    bpb, has_min, has_high = _layout(name)
    n_rows = rows.shape[0]
    nb = rows.shape[1] // bpb
    b = rows.reshape(n_rows, nb, bpb)
    d = np.ascontiguousarray(b[..., 0:2]).view(np.uint16).reshape(n_rows, nb)
    at = 2
    m = np.empty((n_rows, 0), np.uint16)
    qh = np.empty((n_rows, 0), np.uint32)
    if has_min:
        m = np.ascontiguousarray(b[..., 2:4]).view(np.uint16).reshape(n_rows, nb)
        at = 4
    if has_high:
        qh = np.ascontiguousarray(b[..., at : at + 4]).view(np.uint32).reshape(n_rows, nb)
        at += 4
    if name == "Q8_0":
        return PairedBlocks(np.ascontiguousarray(b[..., 2:34]).reshape(n_rows, 32 * nb), d, m, qh)
    packed = b[..., at : at + 16]
    npair = nb // 2
    if has_high and npair:
        qh = qh.copy()
        words = qh[:, : 2 * npair].reshape(n_rows, npair, 2)
        bits = (words[..., None] >> _J.astype(np.uint32)) & np.uint32(1)  # (n, np, 2, 32)
        bits = bits.astype(np.uint64)
        hq = (bits[:, :, 0] << POS_A.astype(np.uint64)).sum(-1) | (
            bits[:, :, 1] << POS_B.astype(np.uint64)
        ).sum(-1)
        qh[:, : 2 * npair] = hq.astype(np.uint64).view(np.uint32).reshape(n_rows, 2 * npair)
    q = nibbles(packed[:, : 2 * npair].reshape(-1, 16)).reshape(n_rows, npair, 2, 32)
    pairs = (q[:, :, 0] | (q[:, :, 1] << np.uint8(4))).reshape(n_rows, 32 * npair)
    if nb % 2:
        pairs = np.concatenate([pairs, packed[:, -1]], axis=1)
    return PairedBlocks(np.ascontiguousarray(pairs), d, m, qh)


def to_blocks(pb: PairedBlocks, name: str, r0: int = 0, r1: int | None = None) -> np.ndarray:
    """Rows [r0, r1) of :class:`PairedBlocks` back to GGML blocks (rows, nb, block bytes)."""
    bpb, has_min, has_high = _layout(name)
    d = pb.d[r0:r1]
    n_rows, nb = d.shape
    out = np.empty((n_rows, nb, bpb), dtype=np.uint8)
    out[..., 0:2] = d.view(np.uint8).reshape(n_rows, nb, 2)
    at = 2
    if has_min:
        out[..., 2:4] = pb.m[r0:r1].view(np.uint8).reshape(n_rows, nb, 2)
        at = 4
    if name == "Q8_0":
        out[..., 2:34] = pb.qs[r0:r1].reshape(n_rows, nb, 32)
        return out
    npair = nb // 2
    if has_high:
        qh = pb.qh[r0:r1].copy()
        if npair:
            hq = qh[:, : 2 * npair].copy().view(np.uint64)[..., None]  # (n, np, 1)
            a = (hq >> POS_A.astype(np.uint64)) & np.uint64(1)
            bb = (hq >> POS_B.astype(np.uint64)) & np.uint64(1)
            weights = np.uint64(1) << _J.astype(np.uint64)
            words = np.stack([(a * weights).sum(-1), (bb * weights).sum(-1)], axis=-1)
            qh[:, : 2 * npair] = words.astype(np.uint32).reshape(n_rows, 2 * npair)
        out[..., at : at + 4] = qh.view(np.uint8).reshape(n_rows, nb, 4)
        at += 4
    qs = pb.qs[r0:r1]
    pairs = qs[:, : 32 * npair].reshape(n_rows, npair, 1, 32)
    q = np.concatenate([pairs & np.uint8(0x0F), pairs >> np.uint8(4)], axis=2)  # (n, np, 2, 32)
    packed = q[..., :16] | (q[..., 16:] << np.uint8(4))
    out[:, : 2 * npair, at:] = packed.reshape(n_rows, 2 * npair, 16)
    if nb % 2:
        out[:, -1, at:] = qs[:, 32 * npair :]
    return out


def dequantize_rows(pb: PairedBlocks, name: str, r0: int, r1: int, out: np.ndarray) -> None:
    """Rows [r0, r1) of :class:`PairedBlocks` as f32 into ``out`` (r1 - r0, 32 * nb)."""
    if name == "Q8_0":
        dequantize_split_q8_0(pb.qs[r0:r1], pb.d[r0:r1], F16_TO_F32, out)
    else:
        qs, d, m, qh = pb.qs[r0:r1], pb.d[r0:r1], pb.m[r0:r1], pb.qh[r0:r1]
        zero = RECORDS[GGMLType[name]].zero_point
        dequantize_paired(qs, d, m, qh, F16_TO_F32, zero, out)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_paired(qs, d, m, qh, f16, offset, out):
    """Rows of :class:`PairedBlocks` -> f32 (rows, 32 * nb), bit-identical to the GGML
    dequantizers: ``d * (q - offset)`` without mins, ``d * q + m`` with them."""
    nb = d.shape[1]
    has_min = m.shape[1] > 0
    has_high = qh.shape[1] > 0
    for r in range(d.shape[0]):
        for b in range(nb):
            scale = f16[d[r, b]]
            mn = f16[m[r, b]] if has_min else np.float32(0)
            paired = b // 2 * 2 + 1 < nb
            hbits = np.int64(0)
            if has_high and paired:  # decode the pair's u64 (see POS_A / POS_B)
                hq = np.int64(qh[r, b // 2 * 2]) | (np.int64(qh[r, b // 2 * 2 + 1]) << 32)
                for j in range(32):
                    pos = 32 * ((j // 4) % 2) + 8 * (j % 4) + j // 8 + 4 * (1 - b % 2)
                    hbits |= ((hq >> pos) & 1) << j
            elif has_high:
                hbits = np.int64(qh[r, b])
            for j in range(32):
                if paired:  #: block 2k low nibbles, 2k+1 high nibbles
                    byte = np.int64(qs[r, 32 * (b // 2) + j])
                    q = (byte >> (4 * (b % 2))) & 15
                else:  # odd last block: GGML packing
                    byte = np.int64(qs[r, 32 * (b // 2) + j % 16])
                    q = (byte >> (4 * (j // 16))) & 15
                q |= ((hbits >> j) & 1) << 4
                if has_min:
                    out[r, 32 * b + j] = scale * np.float32(q) + mn
                else:
                    out[r, 32 * b + j] = scale * np.float32(q - offset)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_split_q8_0(qs, d, f16, out):
    """Q8_0 with split scales -> f32 (rows, 32 * nb), bit-identical to q8_0.dequantize_ref."""
    for r in range(d.shape[0]):
        for b in range(d.shape[1]):
            scale = f16[d[r, b]]
            for j in range(32):
                out[r, 32 * b + j] = np.float32(np.int8(qs[r, 32 * b + j])) * scale


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_q6_k(blocks, f16, out):
    """Q6_K blocks (n, 210) -> f32 (n, 256), bit-identical to q6_k.dequantize_ref; one pass
    per 16 bytes of ql/qh writes the four weights that share them (as llama.cpp), on int32,
    so it vectorizes (prefill dequantizes every Q6_K matrix per prompt chunk)."""
    for b in range(blocks.shape[0]):
        blk = blocks[b]
        o = out[b]
        d = f16[np.int32(blk[208]) | (np.int32(blk[209]) << 8)]
        for h in range(2):
            for s in range(2):
                sc = 192 + 8 * h + s
                d0 = d * np.float32(np.int8(blk[sc]))
                d1 = d * np.float32(np.int8(blk[sc + 2]))
                d2 = d * np.float32(np.int8(blk[sc + 4]))
                d3 = d * np.float32(np.int8(blk[sc + 6]))
                ql0 = blk[64 * h + 16 * s : 64 * h + 16 * s + 16]
                ql1 = blk[64 * h + 32 + 16 * s : 64 * h + 48 + 16 * s]
                qh = blk[128 + 32 * h + 16 * s : 128 + 32 * h + 16 * s + 16]
                e = 128 * h + 16 * s
                o0 = o[e : e + 16]
                o1 = o[e + 32 : e + 48]
                o2 = o[e + 64 : e + 80]
                o3 = o[e + 96 : e + 112]
                for j in range(16):
                    a = np.int32(ql0[j])
                    c = np.int32(ql1[j])
                    hb = np.int32(qh[j])
                    o0[j] = d0 * np.float32(((a & 15) | ((hb & 3) << 4)) - 32)
                    o1[j] = d1 * np.float32(((c & 15) | (((hb >> 2) & 3) << 4)) - 32)
                    o2[j] = d2 * np.float32(((a >> 4) | (((hb >> 4) & 3) << 4)) - 32)
                    o3[j] = d3 * np.float32(((c >> 4) | ((hb >> 6) << 4)) - 32)
