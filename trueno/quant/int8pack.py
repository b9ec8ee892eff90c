"""Packing for the int8 GEMM (int8gemm.py): W rows of a prepared weight -> one panel.

Per 32-weight block the panel holds 8 vectors of W dwords (vector k: weights 4k..4k+3 of every
row as unsigned bytes, ``wq`` (nblk, 8, W)), then the block's W f32 scales ``wd`` and mins
``wm`` ((nblk, W); Q6_K: two scales per block, (nblk, 2, W)). Full tiles of the re-laid Q4_0,
Q4_1, Q5_0, Q5_1, Q8_0 (relayout.PairedBlocks) and of Q4_K and Q6_K's GGML blocks are
transposed in IR (:func:`pack_rows`: 32 bytes of each of the W rows, then 8 shuffles); partial
tiles and Q5_K by numba loops, which the tests hold the IR against. Rows past the last are
packed as zeros (their lanes are never stored).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from trueno.backends.numba_cache import drop_stale
from trueno.quant.llvm_ir import I32, data, i64, load, row_ptr
from trueno.quant.q4_k import scale_min_k4

# the IR transpose inlines llvm_ir.py's builders, which numba's stamp (this file) ignores
drop_stale(__file__, ("llvm_ir.py",))

# ISA level -> (rows per tile W, tokens per tile NT): W i32 lanes per vector; NT accumulators
# plus the 8 weight vectors of a block fit the level's 32 zmm / 16 ymm registers
TILE_SHAPE = {"avx512": (16, 8), "avxvnni": (8, 4), "avx2": (8, 4)}


M4 = np.uint32(0x0F0F0F0F)
LOW = np.uint32(0x01010101)


@numba.njit(inline="always")
def _spread4(bits):
    """4 bits -> a dword with 0x10 in byte lane j where bit j is set."""
    b = np.uint32(bits)
    return ((b & np.uint32(1)) | ((b & np.uint32(2)) << 7) | ((b & np.uint32(4)) << 14)) << 4 | (
        (b & np.uint32(8)) << 25
    )


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pack_paired(qs32, d, m, qh, f16, r0, n_lanes, wq, wd, wm):
    """Rows [r0, r0 + n_lanes) of relayout.PairedBlocks (Q4_0, Q4_1, Q5_0, Q5_1; ``qs32`` its
    qs viewed as uint32) -> the packed panel. Lanes innermost: contiguous stores, and loops
    LLVM vectorizes."""
    rows, nb = d.shape
    has_min = m.shape[1] > 0
    has_high = qh.shape[1] > 0
    npair = nb // 2
    n = min(n_lanes, rows - r0)
    if n < n_lanes:  # rows past the end: zero weights and scales
        wq[:] = 0
        wd[:] = 0
        wm[:] = 0
    for b in range(nb):
        for i in range(n):
            wd[b * n_lanes + i] = f16[d[r0 + i, b]]
        if has_min:
            for i in range(n):
                wm[b * n_lanes + i] = f16[m[r0 + i, b]]
    for p in range(npair):
        ba = (2 * p) * 8 * n_lanes
        bb = (2 * p + 1) * 8 * n_lanes
        for k in range(8):
            c = np.uint64(32 * (k % 2) + k // 2 + 4)
            for i in range(n):
                v = qs32[r0 + i, 8 * p + k]
                lo = v & M4
                hi = (v >> np.uint32(4)) & M4
                if has_high:
                    hq = np.uint64(qh[r0 + i, 2 * p]) | (
                        np.uint64(qh[r0 + i, 2 * p + 1]) << np.uint64(32)
                    )
                    lo |= (np.uint32((hq >> c) & np.uint64(0xFFFFFFFF)) & LOW) << np.uint32(4)
                    hi |= (
                        np.uint32((hq >> (c - np.uint64(4))) & np.uint64(0xFFFFFFFF)) & LOW
                    ) << np.uint32(4)
                wq[ba + k * n_lanes + i] = lo
                wq[bb + k * n_lanes + i] = hi
    if nb % 2:  # the odd last block keeps GGML's packing
        b = nb - 1
        base = b * 8 * n_lanes
        for k in range(4):
            for i in range(n):
                v = qs32[r0 + i, 8 * npair + k]
                lo = v & M4
                hi = (v >> np.uint32(4)) & M4
                if has_high:
                    word = np.uint32(qh[r0 + i, b])
                    lo |= _spread4((word >> np.uint32(4 * k)) & np.uint32(15))
                    hi |= _spread4((word >> np.uint32(16 + 4 * k)) & np.uint32(15))
                wq[base + k * n_lanes + i] = lo
                wq[base + (k + 4) * n_lanes + i] = hi


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pack_split_q8_0(qs32, d, f16, r0, n_lanes, wq, wd):
    """Rows of Q8_0 with split scales: the signed bytes + 128 (zero point 128)."""
    rows, nb = d.shape
    flip = np.uint32(0x80808080)
    for i in range(n_lanes):
        r = r0 + i
        for b in range(nb):
            base = b * 8 * n_lanes + i
            if r >= rows:
                wd[b * n_lanes + i] = 0
                for k in range(8):
                    wq[base + k * n_lanes] = flip
                continue
            wd[b * n_lanes + i] = f16[d[r, b]]
            for k in range(8):
                wq[base + k * n_lanes] = qs32[r, 8 * b + k] ^ flip


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pack_scales(d, m, f16, r0, n_lanes, wd, wm):
    """The f32 scales (and mins, where ``m`` has columns) of rows r0 .. r0 + n_lanes - 1,
    lanes innermost; zero past the last row."""
    rows, nb = d.shape
    n = min(n_lanes, rows - r0)
    for b in range(nb):
        for i in range(n_lanes):
            wd[b * n_lanes + i] = f16[d[r0 + i, b]] if i < n else np.float32(0)
        if m.shape[1] > 0:
            for i in range(n_lanes):
                wm[b * n_lanes + i] = f16[m[r0 + i, b]] if i < n else np.float32(0)


@intrinsic
def _u32(typingctx, row, o):
    """The little-endian uint32 at byte ``o`` of a C-contiguous uint8 row, any alignment (one
    unaligned load where numba would assemble four bytes)."""

    def codegen(context, builder, sig, args):
        base = data(context, builder, sig.args[0], args[0])
        return load(builder, base, args[1], I32)

    return types.uint32(row, types.int64), codegen


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pack_k4_scales(blocks, f16, r0, n_lanes, wd, wm, has_high):
    """The f32 scale d * sc and min -dmin * m of every 32-weight sub-block of Q4_K (Q5_K)
    rows r0 .. r0 + n_lanes - 1; zero past the last row."""
    rows = blocks.shape[0]
    bpb = 176 if has_high else 144
    nsb = blocks.shape[1] // bpb
    n = min(n_lanes, rows - r0)
    for i in range(n_lanes):
        if i >= n:
            for b in range(8 * nsb):
                wd[b * n_lanes + i] = 0
                wm[b * n_lanes + i] = 0
            continue
        row = blocks[r0 + i]
        for sb in range(nsb):
            o = sb * bpb
            d = f16[np.int64(row[o]) | (np.int64(row[o + 1]) << 8)]
            dmin = f16[np.int64(row[o + 2]) | (np.int64(row[o + 3]) << 8)]
            for s in range(8):
                sc, mn = scale_min_k4(blocks, r0 + i, o + 4, s)
                wd[(8 * sb + s) * n_lanes + i] = d * np.float32(sc)
                wm[(8 * sb + s) * n_lanes + i] = -(dmin * np.float32(mn))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pack_k4(blocks, f16, r0, n_lanes, wq, wd, wm, has_high):
    """Rows of Q4_K (Q5_K with ``has_high``) GGML blocks: each 32-weight sub-block a block of
    unsigned q with scale d * sc and min -dmin * m (w = d * sc * q - dmin * m)."""
    rows = blocks.shape[0]
    bpb = 176 if has_high else 144
    qs_at = 48 if has_high else 16
    nsb = blocks.shape[1] // bpb
    n = min(n_lanes, rows - r0)
    if n < n_lanes:
        wq[:] = 0
    pack_k4_scales(blocks, f16, r0, n_lanes, wd, wm, has_high)
    for i in range(n):
        row = blocks[r0 + i]
        for sb in range(nsb):
            o = sb * bpb
            for j in range(4):
                ba = (8 * sb + 2 * j) * 8 * n_lanes + i
                bb = ba + 8 * n_lanes
                for k in range(8):
                    v = _u32(row, o + qs_at + 32 * j + 4 * k)
                    lo = v & M4
                    hi = (v >> np.uint32(4)) & M4
                    if has_high:
                        h = _u32(row, o + 16 + 4 * k)
                        lo |= ((h >> np.uint32(2 * j)) & LOW) << np.uint32(4)
                        hi |= ((h >> np.uint32(2 * j + 1)) & LOW) << np.uint32(4)
                    wq[ba + k * n_lanes] = lo
                    wq[bb + k * n_lanes] = hi


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pack_q6_k_scales(blocks, f16, r0, n_lanes, wd):
    """Q6_K's f32 scale d * sc per 16 weights of rows r0 .. r0 + n_lanes - 1 (``wd`` (nblk,
    2, W)); zero past the last row."""
    rows = blocks.shape[0]
    nsb = blocks.shape[1] // 210
    n = min(n_lanes, rows - r0)
    for i in range(n_lanes):
        if i >= n:
            for j in range(16 * nsb):
                wd[j * n_lanes + i] = 0
            continue
        row = blocks[r0 + i]
        for sb in range(nsb):
            o = sb * 210
            d = f16[np.int64(row[o + 208]) | (np.int64(row[o + 209]) << 8)]
            for h in range(2):
                for c in range(4):
                    blk = 8 * sb + 4 * h + c
                    for half in range(2):
                        sc = np.int8(row[o + 192 + 8 * h + 2 * c + half])
                        wd[(2 * blk + half) * n_lanes + i] = d * np.float32(sc)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pack_q6_k(blocks, f16, r0, n_lanes, wq, wd):
    """Rows of Q6_K GGML blocks: unsigned 6-bit q (zero point 32 per 16), one scale d * sc per
    16 weights (``wd`` (nblk, 2, W))."""
    rows = blocks.shape[0]
    nsb = blocks.shape[1] // 210
    n = min(n_lanes, rows - r0)
    if n < n_lanes:
        wq[:] = 0
    pack_q6_k_scales(blocks, f16, r0, n_lanes, wd)
    m2 = np.uint32(0x03030303)
    for i in range(n):
        row = blocks[r0 + i]
        for sb in range(nsb):
            o = sb * 210
            for h in range(2):
                for c in range(4):  # the 32-weight blocks 4h + c: q1..q4 of dequantize_row_q6_K
                    base = (8 * sb + 4 * h + c) * 8 * n_lanes + i
                    for k in range(8):
                        ql = _u32(row, o + 64 * h + 32 * (c % 2) + 4 * k)
                        qh = _u32(row, o + 128 + 32 * h + 4 * k)
                        lo = (ql >> np.uint32(4 * (c // 2))) & M4
                        hi = ((qh >> np.uint32(2 * c)) & m2) << np.uint32(4)
                        wq[base + k * n_lanes] = lo | hi


def _concat(builder, parts):
    """Vectors of one type -> their concatenation (a tree of shufflevectors)."""
    while len(parts) > 1:
        n = parts[0].type.count
        mask = ir.Constant(ir.VectorType(I32, 2 * n), list(range(2 * n)))
        parts = [
            builder.shuffle_vector(parts[j], parts[j + 1], mask) for j in range(0, len(parts), 2)
        ]
    return parts[0]


@intrinsic
def pack_rows(typingctx, kind, qs, qh, r0, n_steps, wq):
    """The packed panel of W full rows from r0 (``kind`` ``"<level>/<paired|paired5|split|k4>"``):
    ``paired`` / ``paired5`` transpose relayout.PairedBlocks' nibble pairs (``n_steps`` pairs;
    paired5 ORs in the 5th bits of ``qh``), ``split`` the int8 rows of Q8_0 (``n_steps``
    blocks, each byte + 128), ``k4`` the nibble pairs of Q4_K's GGML blocks (``qs`` the blocks,
    ``n_steps`` = 4 per super-block). Full tiles only: rows r0 .. r0 + W - 1 must exist."""
    if not isinstance(kind, types.StringLiteral):
        return None
    level, form = kind.literal_value.split("/")
    W = TILE_SHAPE[level][0]

    def codegen(context, builder, sig, args):
        _, qst, qht, _, _, wqt = sig.args
        _, qs_v, qh_v, r0_v, n_v, wq_v = args
        v8, vw = ir.VectorType(I32, 8), ir.VectorType(I32, W)
        v64 = ir.VectorType(ir.IntType(64), W)
        rows = [row_ptr(context, builder, qst, qs_v, builder.add(r0_v, i64(i))) for i in range(W)]
        hrows = []
        if form == "paired5":
            hrows = [
                row_ptr(context, builder, qht, qh_v, builder.add(r0_v, i64(i))) for i in range(W)
            ]
        wq_p = data(context, builder, wqt, wq_v)

        def vconst32(value):
            return ir.Constant(vw, [ir.Constant(I32, value)] * W)

        def store(vec, block, k):
            at = builder.mul(builder.add(builder.mul(block, i64(8)), i64(k)), i64(4 * W))
            ptr = builder.bitcast(builder.gep(wq_p, [at]), vw.as_pointer())
            builder.store(vec, ptr, align=4)

        def transposed(at):
            """The 32 bytes at ``at`` of every row -> 8 vectors, k: dword k of each row."""
            big = _concat(builder, [load(builder, r, at, v8) for r in rows])
            return [
                builder.shuffle_vector(big, big, ir.Constant(vw, [8 * i + k for i in range(W)]))
                for k in range(8)
            ]

        with cgutils.for_range(builder, n_v) as loop:
            p = loop.index
            if form == "k6":  # super-block p: ql in 4 chunks of 32 bytes, qh in 2
                base = builder.mul(p, i64(210))
                ql = [transposed(builder.add(base, i64(32 * m))) for m in range(4)]
                qh = [transposed(builder.add(base, i64(128 + 32 * h))) for h in range(2)]
                for h in range(2):
                    for c in range(4):  # block 4h + c: q1..q4 of dequantize_row_q6_K
                        blk = builder.add(builder.mul(p, i64(8)), i64(4 * h + c))
                        for k in range(8):
                            lo = builder.lshr(ql[2 * h + c % 2][k], vconst32(4 * (c // 2)))
                            lo = builder.and_(lo, vconst32(0x0F0F0F0F))
                            hi = builder.lshr(qh[h][k], vconst32(2 * c))
                            hi = builder.shl(builder.and_(hi, vconst32(0x03030303)), vconst32(4))
                            store(builder.or_(lo, hi), blk, k)
            else:
                if form == "k4":  # pair j of super-block sb: 32 bytes at 144 sb + 16 + 32 j
                    sb, j = builder.udiv(p, i64(4)), builder.urem(p, i64(4))
                    at = builder.add(builder.mul(sb, i64(144)), builder.mul(j, i64(32)))
                    at = builder.add(at, i64(16))
                else:
                    at = builder.mul(p, i64(32))
                vk = transposed(at)
                if form == "split":
                    for k in range(8):
                        store(builder.xor(vk[k], vconst32(0x80808080 - (1 << 32))), p, k)
                else:
                    hq = None
                    if form == "paired5":
                        hq = ir.Constant(v64, None)
                        for i, r in enumerate(hrows):
                            word = load(builder, r, builder.mul(p, i64(8)), ir.IntType(64))
                            hq = builder.insert_element(hq, word, ir.Constant(I32, i))
                    b_lo = builder.mul(p, i64(2))
                    b_hi = builder.add(b_lo, i64(1))
                    m4 = vconst32(0x0F0F0F0F)
                    for k in range(8):
                        lo = builder.and_(vk[k], m4)
                        hi = builder.and_(builder.lshr(vk[k], vconst32(4)), m4)
                        if hq is not None:
                            c = 32 * (k % 2) + k // 2 + 4
                            for shift, which in ((c, 0), (c - 4, 1)):
                                sh = ir.Constant(v64, [ir.Constant(ir.IntType(64), shift)] * W)
                                bits = builder.trunc(builder.lshr(hq, sh), vw)
                                bits = builder.shl(
                                    builder.and_(bits, vconst32(0x01010101)), vconst32(4)
                                )
                                if which == 0:
                                    lo = builder.or_(lo, bits)
                                else:
                                    hi = builder.or_(hi, bits)
                        store(lo, b_lo, k)
                        store(hi, b_hi, k)
        return context.get_dummy_value()

    return types.void(kind, qs, qh, types.int64, types.int64, wq), codegen


def packer(level: str, form: str):
    """pack(w, f16, r0, wq, wd, wm): the panel of W rows from r0 for one packed form; full
    tiles of the re-laid forms by the IR transpose, the rest by the numba loops."""
    W = TILE_SHAPE[level][0]
    kind = f"{level}/{form}"

    if form in ("paired", "paired5"):

        @numba.njit(inline="always")
        def pack(w, f16, r0, wq, wd, wm):
            qs, qs32, d, m, qh = w
            if r0 + W <= d.shape[0] and d.shape[1] % 2 == 0:
                pack_rows(kind, qs, qh, r0, d.shape[1] // 2, wq)
                pack_scales(d, m, f16, r0, W, wd, wm)
            else:
                pack_paired(qs32, d, m, qh, f16, r0, W, wq, wd, wm)

    elif form == "split":

        @numba.njit(inline="always")
        def pack(w, f16, r0, wq, wd, wm):
            qs, qs32, d, m, qh = w
            if r0 + W <= d.shape[0]:
                pack_rows(kind, qs, qh, r0, d.shape[1], wq)
                pack_scales(d, m, f16, r0, W, wd, wm)
            else:
                pack_split_q8_0(qs32, d, f16, r0, W, wq, wd)

    elif form.startswith("grouped-"):  # grouped.py's records of a type (avx512: 16 rows)
        from trueno.quant.grouped import pack_panel as pack_grouped

        name = form.split("-")[1]

        @numba.njit(inline="always")
        def pack(w, f16, r0, wq, wd, wm):
            pack_grouped(name, w[0], f16, r0, wq, wd, wm)

    elif form == "k6":

        @numba.njit(inline="always")
        def pack(w, f16, r0, wq, wd, wm):
            blocks = w[0]
            if r0 + W <= blocks.shape[0]:
                pack_rows(kind, blocks, blocks, r0, blocks.shape[1] // 210, wq)
                pack_q6_k_scales(blocks, f16, r0, W, wd)
            else:
                pack_q6_k(blocks, f16, r0, W, wq, wd)

    elif form == "k4":

        @numba.njit(inline="always")
        def pack(w, f16, r0, wq, wd, wm):
            blocks = w[0]
            if r0 + W <= blocks.shape[0]:
                pack_rows(kind, blocks, blocks, r0, blocks.shape[1] // 144 * 4, wq)
                pack_k4_scales(blocks, f16, r0, W, wd, wm, False)
            else:
                pack_k4(blocks, f16, r0, W, wq, wd, wm, False)

    else:

        @numba.njit(inline="always")
        def pack(w, f16, r0, wq, wd, wm):
            pack_k4(w[0], f16, r0, W, wq, wd, wm, True)

    return pack


def pack_panel(kind, w, f16, r0, wq, wd, wm):
    """:func:`packer`'s pack for ``kind`` = "<level>/<form>", a string literal. A cached
    kernel calls this, its closure holding the string: a closure holding the packer itself
    (a dispatcher, which pickles to a new id in every process) never matched numba's disk
    cache, so every process compiled the GEMM again (2.7 s on a server's first prompt)."""


@overload(pack_panel, prefer_literal=True, inline="always")
def _pack_panel(kind, w, f16, r0, wq, wd, wm):
    if not isinstance(kind, types.StringLiteral):
        return None
    pack = packer(*kind.literal_value.split("/"))

    def impl(kind, w, f16, r0, wq, wd, wm):
        pack(w, f16, r0, wq, wd, wm)

    return impl
