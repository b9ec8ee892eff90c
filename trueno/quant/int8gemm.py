"""The register-blocked int8 GEMM of prefill: packed weight panels times int8 activations.

A tile is W weight rows x NT tokens (W = 16 with AVX-512: one zmm lane per row; W = 8 on the
256-bit levels). Before a tile's tokens run, its W rows are *packed* (on the thread, into a
scratch that stays in L1/L2, reused by all T tokens, as BLAS packs its panels and as llama.cpp's
repack lays Q4_0 out at load): per 32-weight block, 8 vectors of W dwords, vector k holding
weights 4k..4k+3 of every row as unsigned bytes, then the block's W f32 scales (and mins).
The inner step is then one ``vpdpbusd`` per 4 activation bytes, the bytes broadcast from memory
to every row's lane (an embedded ``{1to16}`` operand), so each weight vector loaded into a
register serves NT tokens and each activation dword W rows, with no horizontal sums:

    isum[t] = xc[t, b] + sum_k dpbusd(w_k, bcast(xq[t, 32b + 4k]))       (W lanes, i32)
    acc[t] += f32(isum[t]) * (d_b * dx[t, b])   (+ m_b * xs[t, b] for the types with mins)

with ``xc = -zero_point * sum(xq)`` per activation block (the weights stay unsigned: Q4_0's
q - 8 is q with zero point 8; Q8_0's signed bytes are q + 128 with zero point 128). Activations
are quantized per 32 (llama.cpp's Q8_0) for every type, the K-quants included (their 32-weight
sub-blocks become blocks with scale d * sc and min -dmin * m).

Levels: ``avx512`` (512-bit vpdpbusd), ``avxvnni`` (the 256-bit VNNI form) and ``avx2``
(vpmaddubsw + vpmaddwd, whose i16 pair sums cannot saturate for weights <= 31, so Q8_0 has no
avx2 tile). The integer sums equal the row dots' of simd.py; only the f32 order differs.
"""

from __future__ import annotations

import functools
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from trueno.quant.fused import drop_stale_cache
from trueno.quant.llvm_ir import F32, I8, I32, Acc, data, i64, llvm, load, splat, x86
from trueno.quant.q4_k import scale_min_k4

# the kernels inline llvm_ir.py's IR builders, which numba's stamp (this file) ignores
drop_stale_cache(module="int8gemm", sources=("int8gemm.py", "llvm_ir.py"))

# ISA level -> (rows per tile W, tokens per tile NT): W i32 lanes per vector; NT accumulators
# plus the 8 weight vectors of a block fit the level's 32 zmm / 16 ymm registers
TILE_SHAPE = {"avx512": (16, 8), "avxvnni": (8, 4), "avx2": (8, 4)}


def _dot(builder, level, w, acc, a):
    """acc + the u8 x s8 dot of ``w`` (unsigned weight bytes) and ``a`` (signed activation
    bytes), four products per i32 lane."""
    vty = acc.type
    if level == "avx512":
        return x86(builder, "llvm.x86.avx512.vpdpbusd.512", vty, acc, w, a)
    if level == "avxvnni":
        return x86(builder, "llvm.x86.avx512.vpdpbusd.256", vty, acc, w, a)
    v32i8, v16i16 = ir.VectorType(I8, 32), ir.VectorType(ir.IntType(16), 16)
    pairs = x86(
        builder,
        "llvm.x86.avx2.pmadd.ub.sw",
        v16i16,
        builder.bitcast(w, v32i8),
        builder.bitcast(a, v32i8),
    )
    ones = ir.Constant(v16i16, [ir.Constant(ir.IntType(16), 1)] * 16)
    return builder.add(acc, x86(builder, "llvm.x86.avx2.pmadd.wd", vty, pairs, ones))


def _fma(builder, a, b, c):
    return llvm(builder, f"llvm.fma.v{a.type.count}f32", a.type, a, b, c)


def _row(context, builder, arytype, value, row):
    """i8* to row ``row`` of a C-contiguous 2-D array."""
    ary = context.make_array(arytype)(context, builder, value)
    stride = builder.extract_value(ary.strides, 0)
    return builder.gep(builder.bitcast(ary.data, I8.as_pointer()), [builder.mul(row, stride)])


@functools.cache
def tile_kind(kind: str) -> tuple[str, int, int, str]:
    """``"<level>/<zp|min|half>"`` -> (level, W, NT, form): ``zp`` one scale per block and a
    zero point (``xc`` per 32), ``min`` a scale and a min per block (no zero point), ``half``
    one scale per 16 and a zero point per 16 (Q6_K: ``wd`` (nblk, 2, W), ``xc`` per 16)."""
    level, form = kind.split("/")
    w, nt = TILE_SHAPE[level]
    return level, w, nt, form


@intrinsic
def tile(typingctx, kind, wq, wd, wm, xq, xc, dx, xs, t0, nblk, dst, d_t0, d_r0):
    """dst[d_t0 + i, d_r0 : d_r0 + W] = the packed rows (``wq`` int32 (nblk * 8 * W), ``wd``
    and ``wm`` f32 (nblk * W)) dotted with token t0 + i of the int8 activations (``xq`` int8
    (T, K), ``xc`` int32 / ``dx``, ``xs`` f32 (T, K // 32)), for i < NT; ``kind`` a string
    literal (:func:`tile_kind`)."""
    if not isinstance(kind, types.StringLiteral):
        return None
    level, W, NT, form = tile_kind(kind.literal_value)
    has_min, half = form == "min", form == "half"

    def codegen(context, builder, sig, args):
        _, wqt, wdt, wmt, xqt, xct, dxt, xst, _, _, dstt, _, _ = sig.args
        _, wq_v, wd_v, wm_v, xq_v, xc_v, dx_v, xs_v, t0_v, nb_v, dst_v, dt0, dr0 = args
        vi, vf = ir.VectorType(I32, W), ir.VectorType(F32, W)
        wq_p = data(context, builder, wqt, wq_v)
        wd_p = data(context, builder, wdt, wd_v)
        wm_p = data(context, builder, wmt, wm_v)
        toks = [builder.add(t0_v, i64(i)) for i in range(NT)]
        xrow = [_row(context, builder, xqt, xq_v, t) for t in toks]
        crow = [_row(context, builder, xct, xc_v, t) for t in toks]
        drow = [_row(context, builder, dxt, dx_v, t) for t in toks]
        srow = [_row(context, builder, xst, xs_v, t) for t in toks]
        accs = [Acc(builder, ir.Constant(vf, None)) for _ in range(NT)]
        with cgutils.for_range(builder, nb_v) as loop:
            b = loop.index
            wbase = builder.mul(b, i64(32 * W))
            ws = [load(builder, wq_p, builder.add(wbase, i64(4 * W * k)), vi) for k in range(8)]
            n_sc = 2 if half else 1
            dws = [
                load(
                    builder,
                    wd_p,
                    builder.add(builder.mul(b, i64(4 * W * n_sc)), i64(4 * W * h)),
                    vf,
                )
                for h in range(n_sc)
            ]
            mw = load(builder, wm_p, builder.mul(b, i64(4 * W)), vf) if has_min else None
            x_at = builder.mul(b, i64(32))
            s_at = builder.mul(b, i64(4))
            for i in range(NT):
                dxs = splat(builder, load(builder, drow[i], s_at, F32), W)
                acc = accs[i].get()
                for h in range(n_sc):
                    if has_min:
                        isum = ir.Constant(vi, None)
                    else:
                        c_at = builder.mul(builder.add(builder.mul(b, i64(n_sc)), i64(h)), i64(4))
                        isum = splat(builder, load(builder, crow[i], c_at, I32), W)
                    steps = range(4 * h, 4 * h + 4) if half else range(8)
                    for k in steps:
                        at = builder.add(x_at, i64(4 * k))
                        a = splat(builder, load(builder, xrow[i], at, I32), W)
                        isum = _dot(builder, level, ws[k], isum, a)
                    scale = builder.fmul(dws[h], dxs)
                    acc = _fma(builder, builder.sitofp(isum, vf), scale, acc)
                if has_min:
                    xsum = splat(builder, load(builder, srow[i], s_at, F32), W)
                    acc = _fma(builder, mw, xsum, acc)
                accs[i].set(acc)
        col = builder.mul(dr0, i64(4))
        for i in range(NT):
            out = _row(context, builder, dstt, dst_v, builder.add(dt0, i64(i)))
            ptr = builder.bitcast(builder.gep(out, [col]), vf.as_pointer())
            builder.store(accs[i].get(), ptr, align=4)
        return context.get_dummy_value()

    sig = types.void(
        kind, wq, wd, wm, xq, xc, dx, xs, types.int64, types.int64, dst, types.int64, types.int64
    )
    return sig, codegen


# ---------------------------------------------------------------------------------------------
# Packing: W rows of a prepared weight -> wq (nblk, 8, W) u8x4 dwords, wd / wm (nblk, W) f32.
# Rows past the end are packed as zeros (their lanes are never stored).

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


@intrinsic
def as_f32(typingctx, bits):
    """The float32 whose bits are the int32 ``bits``."""
    if bits != types.int32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], F32)

    return types.float32(bits), codegen


@intrinsic
def rint(typingctx, x):
    """np.rint of a float32 (round half to even) as llvm.rint, which LLVM vectorizes (numba's
    np.rint calls libm per element)."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return llvm(builder, "llvm.rint.f32", F32, args[0])

    return types.float32(x), codegen


@numba.njit(cache=True, nogil=True, error_model="numpy")
def quantize_q8(x, xbits, xq, dx, xs, xc, xc16, zero_point, zero_point16):
    """One activation row -> int8 per 32 exactly as fused.quantize_activations (so the integer
    sums equal the row dots'), plus xs = dx * sum(xq) and xc = -zero_point * sum(xq) per 32,
    xc16 = -zero_point16 * sum(xq) per 16. ``xbits``: x viewed as int32, whose max of
    |bits| is the bits of max |x| (a NaN stays the largest): an integer max vectorizes."""
    for b in range(x.size // 32):
        o = b * 32
        top = np.int32(0)
        for i in range(32):
            top = max(top, xbits[o + i] & np.int32(0x7FFFFFFF))
        amax = as_f32(np.int32(top))
        d = amax / np.float32(127)
        inv = np.float32(1) / d if d > 0 else np.float32(0)
        s0 = 0
        s1 = 0
        for i in range(16):
            q = np.int8(rint(x[o + i] * inv))
            xq[o + i] = q
            s0 += np.int32(q)
        for i in range(16, 32):
            q = np.int8(rint(x[o + i] * inv))
            xq[o + i] = q
            s1 += np.int32(q)
        dx[b] = d
        xs[b] = d * np.float32(s0 + s1)
        xc[b] = -zero_point * (s0 + s1)
        xc16[2 * b] = -zero_point16 * s0
        xc16[2 * b + 1] = -zero_point16 * s1


# ---------------------------------------------------------------------------------------------
# The driver: activations quantized per 32 (Q8_0) once, then per thread a contiguous run of
# W-row tiles, each packed once and multiplied with every block of NT tokens.


def _packer(level: str, form: str):
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


def _make_gemm(level: str, form: str, zero_point: int):
    """The int8 GEMM of one level and packed form (:data:`FORMS`)."""
    tile_form = {"k4": "min", "k5": "min", "k6": "half"}.get(form)
    if tile_form is None:
        tile_form = "zp" if zero_point else "min"
    kind = f"{level}/{tile_form}"
    _, W, NT, _ = tile_kind(kind)
    half = tile_form == "half"
    zp32, zp16 = (0, zero_point) if half else (zero_point, 0)
    pack = _packer(level, form)

    @numba.njit(cache=True, parallel=True, error_model="numpy")
    def gemm(w, f16, x, xq, dx, xs, xc, xc16, out, wq, wd, wm, spill):
        """out = x @ W.T; ``w`` the weight's arrays (relayout.PairedBlocks' qs, qs as uint32,
        d, m, qh; or the GGML blocks first); the activation scratch (xq, dx, xs, xc, xc16) has
        T rounded up to NT rows; wq, wd, wm, spill one panel per thread chunk."""
        n_tok, rows = out.shape
        nbx = dx.shape[1]
        for t in range(n_tok):  # on this thread: one parallel region per call
            quantize_q8(x[t], x[t].view(np.int32), xq[t], dx[t], xs[t], xc[t], xc16[t], zp32, zp16)
        xcs = xc16 if half else xc
        t_pad = xq.shape[0]
        n_chunks = wq.shape[0]
        n_tiles = (rows + W - 1) // W
        for c in numba.prange(n_chunks):
            for rt in range(n_tiles * c // n_chunks, n_tiles * (c + 1) // n_chunks):
                r0 = rt * W
                pack(w, f16, r0, wq[c], wd[c], wm[c])
                for t0 in range(0, t_pad, NT):
                    if r0 + W <= rows and t0 + NT <= n_tok:
                        tile(kind, wq[c], wd[c], wm[c], xq, xcs, dx, xs, t0, nbx, out, t0, r0)
                    else:  # an edge: through this thread's spill tile
                        tile(kind, wq[c], wd[c], wm[c], xq, xcs, dx, xs, t0, nbx, spill[c], 0, 0)
                        for i in range(min(NT, n_tok - t0)):
                            for j in range(min(W, rows - r0)):
                                out[t0 + i, r0 + j] = spill[c, i, j]

    return gemm


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
        rows = [_row(context, builder, qst, qs_v, builder.add(r0_v, i64(i))) for i in range(W)]
        hrows = []
        if form == "paired5":
            hrows = [_row(context, builder, qht, qh_v, builder.add(r0_v, i64(i))) for i in range(W)]
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


# ---------------------------------------------------------------------------------------------
# Which weights have a GEMM, and the call

# type -> (packed form, zero point of the unsigned packed weights); Q4_1 / Q5_1 have mins
FORMS = {
    "Q4_0": ("paired", 8),
    "Q4_1": ("paired", 0),
    "Q5_0": ("paired5", 16),
    "Q5_1": ("paired5", 0),
    "Q8_0": ("split", 128),
    "Q4_K": ("k4", 0),
    "Q5_K": ("k5", 0),
    "Q6_K": ("k6", 32),
}
RELAID = ("paired", "paired5", "split")  # forms packed from relayout.PairedBlocks
_KERNELS: dict = {}
_lock = threading.Lock()
_local = threading.local()


def kernel_for(weight):
    """The GEMM of a prepared weight, or None: the re-laid 32-weight formats and the GGML
    blocks of Q4_K, Q5_K, Q6_K at the avx512 / avxvnni / avx2 levels (not Q8_0 at avx2:
    vpmaddubsw would saturate)."""
    name, level = weight.format.name, weight.isa
    if name not in FORMS or level not in TILE_SHAPE or weight._kernel is None:
        return None
    if weight.relaid != (FORMS[name][0] in RELAID):
        return None
    if level == "avx2" and name == "Q8_0":
        return None
    key = (name, level)
    fn = _KERNELS.get(key)
    if fn is None:
        with _lock:
            fn = _KERNELS.get(key)
            if fn is None:
                fn = _KERNELS[key] = _make_gemm(level, *FORMS[name])
    return fn


def _scratch(key, make):
    cache = getattr(_local, "scratch", None)
    if cache is None:
        cache = _local.scratch = {}
    bufs = cache.get(key)
    if bufs is None:
        bufs = cache[key] = make()
    return bufs


def matmul_into(weight, xs: np.ndarray, out: np.ndarray) -> bool:
    """out = xs @ W.T by the int8 GEMM; xs (T, cols) and out (T, rows) float32 C-contiguous.
    False (nothing done) when the weight has none (:func:`kernel_for`)."""
    run = kernel_for(weight)
    if run is None:
        return False
    from trueno.quant.base import F16_TO_F32

    n_tok, cols = xs.shape
    W, NT = TILE_SHAPE[weight.isa]
    t_pad = -(-n_tok // NT) * NT
    nbx = cols // 32
    size = max(t_pad, 2 * NT)

    def acts():
        return (
            np.zeros((size, cols), np.int8),
            np.zeros((size, nbx), np.float32),
            np.zeros((size, nbx), np.float32),
            np.zeros((size, nbx), np.int32),
            np.zeros((size, 2 * nbx), np.int32),
        )

    key = ("acts", cols)
    bufs = _scratch(key, acts)
    if bufs[0].shape[0] < t_pad:
        size = t_pad
        bufs = _local.scratch[key] = acts()
    xq, dx, xsum, xc, xc16 = (b[:t_pad] for b in bufs)
    n_chunks = numba.get_num_threads()

    def panels():
        return (
            np.zeros((n_chunks, nbx * 8 * W), np.uint32),
            np.zeros((n_chunks, 2 * nbx * W), np.float32),
            np.zeros((n_chunks, nbx * W), np.float32),
            np.zeros((n_chunks, NT, W), np.float32),
        )

    wq, wd, wm, spill = _scratch(("panels", n_chunks, nbx, W, NT), panels)
    pb = weight._relaid
    if pb is not None:
        w = (pb.qs, pb.qs.view(np.uint32), pb.d, pb.m, pb.qh)
    else:
        w = (weight.blocks,)
    run(w, F16_TO_F32, xs, xq, dx, xsum, xc, xc16, out, wq, wd, wm, spill)
    return True
