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

Q6_K has a scale and a zero point (32) per 16 weights: two integer sums per block. The panels
are packed by int8pack.py.

Levels: ``avx512`` (512-bit vpdpbusd), ``avxvnni`` (the 256-bit VNNI form) and ``avx2``
(vpmaddubsw + vpmaddwd, whose i16 pair sums cannot saturate for weights <= 63, so Q8_0 has no
avx2 tile; a block's pair sums are added as i16 in runs that cannot wrap, one vpmaddwd a run:
:func:`_dots`). For the 32-weight formats the integer sums equal the row dots' of simd.py;
only the f32 order differs. ``amx`` (opt-in, ``TRUENO_QUANT_AMX=1``, :mod:`trueno.quant.amx`)
multiplies the avx512 panels with 16 tokens at a time on AMX tiles: the same floats as the
avx512 tile.
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

from trueno.backends.numba_cache import drop_stale
from trueno.quant import amx
from trueno.quant.fused import quantize_activations
from trueno.quant.int8pack import TILE_SHAPE, pack_panel
from trueno.quant.llvm_ir import (
    F32,
    I8,
    I32,
    V16I16,
    V32I8,
    Acc,
    data,
    i64,
    llvm,
    load,
    maddubs,
    maddwd,
    row_ptr,
    splat,
    vconst,
    x86,
)

# the kernels inline llvm_ir.py's IR builders, int8pack.py's packers and fused.py's
# quantize_activations, which numba's stamp (this file) ignores
drop_stale(__file__, ("int8pack.py", "grouped.py", "llvm_ir.py", "fused.py", "amx.py"))


def _dots(builder, level, top, acc, terms):
    """acc + the u8 x s8 dots of ``terms``, (unsigned weight bytes at most ``top``, signed
    activation bytes) pairs, four products per i32 lane. VNNI: one vpdpbusd a term. AVX2:
    vpmaddubsw's i16 pair sums, each within 2 * top * 128, are added as i16 in runs too short
    to wrap, then one vpmaddwd a run: the same integers, and for 4-bit weights 9 multiply uops
    a block instead of 16."""
    vty = acc.type
    if level != "avx2":
        op = "vpdpbusd.512" if level == "avx512" else "vpdpbusd.256"
        for w, a in terms:
            acc = x86(builder, f"llvm.x86.avx512.{op}", vty, acc, w, a)
        return acc
    run = max(1, 0x7FFF // (2 * top * 128))
    for i in range(0, len(terms), run):
        pairs = None
        for w, a in terms[i : i + run]:
            p = maddubs(builder, builder.bitcast(w, V32I8), builder.bitcast(a, V32I8))
            pairs = p if pairs is None else builder.add(pairs, p)
        acc = builder.add(acc, maddwd(builder, pairs, vconst(V16I16, 1)))
    return acc


def _fma(builder, a, b, c):
    return llvm(builder, f"llvm.fma.v{a.type.count}f32", a.type, a, b, c)


# W x NT of a tile per level; ``amx`` multiplies the avx512 panels (16 rows) with 16 tokens
SHAPES = {**TILE_SHAPE, "amx": (16, 16)}
PANELS = {"amx": "avx512"}  # the level whose packed panels a tile level reads, where another


def _block_scales(builder, wd_p, wm_p, b, W, n_sc, has_min):
    """Block ``b``'s f32 weight scales of a packed panel (``n_sc`` vectors of W: one, or one
    per 16 weights) and its mins (None without)."""
    vf = ir.VectorType(F32, W)
    at = builder.mul(b, i64(4 * W * n_sc))
    dws = [load(builder, wd_p, builder.add(at, i64(4 * W * h)), vf) for h in range(n_sc)]
    mw = load(builder, wm_p, builder.mul(b, i64(4 * W)), vf) if has_min else None
    return dws, mw


def _store_rows(context, builder, dstt, dst_v, dt0, dr0, accs):
    """dst[dt0 + i, dr0 : dr0 + W] = accs[i], the tile's token rows."""
    col = builder.mul(dr0, i64(4))
    for i, acc in enumerate(accs):
        out = row_ptr(context, builder, dstt, dst_v, builder.add(dt0, i64(i)))
        value = acc.get()
        builder.store(
            value, builder.bitcast(builder.gep(out, [col]), value.type.as_pointer()), align=4
        )


@functools.cache
def tile_kind(kind: str) -> tuple[str, int, int, str, int]:
    """``"<level>/<zp|min|half>/<top>"`` -> (level, W, NT, form, top): ``zp`` one scale per
    block and a zero point (``xc`` per 32), ``min`` a scale and a min per block (no zero
    point), ``half`` one scale per 16 and a zero point per 16 (Q6_K: ``wd`` (nblk, 2, W),
    ``xc`` per 16); ``top`` the largest packed weight byte (:data:`TOPS`)."""
    level, form, top = kind.split("/")
    w, nt = SHAPES[level]
    return level, w, nt, form, int(top)


@intrinsic
def tile(typingctx, kind, wq, wd, wm, xq, xc, dx, xs, t0, nblk, dst, d_t0, d_r0):
    """dst[d_t0 + i, d_r0 : d_r0 + W] = the packed rows (``wq`` int32 (nblk * 8 * W), ``wd``
    and ``wm`` f32 (nblk * W)) dotted with token t0 + i of the int8 activations (``xq`` int8
    (T, K), ``xc`` int32 / ``dx``, ``xs`` f32 (T, K // 32)), for i < NT; ``kind`` a string
    literal (:func:`tile_kind`)."""
    if not isinstance(kind, types.StringLiteral):
        return None
    level, W, NT, form, top = tile_kind(kind.literal_value)
    has_min, half = form == "min", form == "half"
    sig = types.void(
        kind, wq, wd, wm, xq, xc, dx, xs, types.int64, types.int64, dst, types.int64, types.int64
    )
    if level == "amx":
        return sig, functools.partial(_amx_tile, W, NT, has_min, half)

    def codegen(context, builder, sig, args):
        _, wqt, wdt, wmt, xqt, xct, dxt, xst, _, _, dstt, _, _ = sig.args
        _, wq_v, wd_v, wm_v, xq_v, xc_v, dx_v, xs_v, t0_v, nb_v, dst_v, dt0, dr0 = args
        vi, vf = ir.VectorType(I32, W), ir.VectorType(F32, W)
        wq_p = data(context, builder, wqt, wq_v)
        wd_p = data(context, builder, wdt, wd_v)
        wm_p = data(context, builder, wmt, wm_v)
        toks = [builder.add(t0_v, i64(i)) for i in range(NT)]
        xrow = [row_ptr(context, builder, xqt, xq_v, t) for t in toks]
        crow = [row_ptr(context, builder, xct, xc_v, t) for t in toks]
        drow = [row_ptr(context, builder, dxt, dx_v, t) for t in toks]
        srow = [row_ptr(context, builder, xst, xs_v, t) for t in toks]
        accs = [Acc(builder, ir.Constant(vf, None)) for _ in range(NT)]
        with cgutils.for_range(builder, nb_v) as loop:
            b = loop.index
            wbase = builder.mul(b, i64(32 * W))
            ws = [load(builder, wq_p, builder.add(wbase, i64(4 * W * k)), vi) for k in range(8)]
            n_sc = 2 if half else 1
            dws, mw = _block_scales(builder, wd_p, wm_p, b, W, n_sc, has_min)
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
                    terms = []
                    for k in steps:
                        at = builder.add(x_at, i64(4 * k))
                        terms.append((ws[k], splat(builder, load(builder, xrow[i], at, I32), W)))
                    isum = _dots(builder, level, top, isum, terms)
                    scale = builder.fmul(dws[h], dxs)
                    acc = _fma(builder, builder.sitofp(isum, vf), scale, acc)
                if has_min:
                    xsum = splat(builder, load(builder, srow[i], s_at, F32), W)
                    acc = _fma(builder, mw, xsum, acc)
                accs[i].set(acc)
        _store_rows(context, builder, dstt, dst_v, dt0, dr0, accs)
        return context.get_dummy_value()

    return sig, codegen


STEPS = 4  # AMX tile products before their sums are stored (C tiles 0-3)


def _amx_tile(W, NT, has_min, half, context, builder, sig, args):
    """:func:`tile` with AMX. Per block (per half block for ``half``) one ``tdpbsud`` of NT
    tokens' activation bytes (straight from ``xq``'s rows) with the block's packed weights
    (the panel's 8 vectors of W dwords are a B tile's rows) into a C tile of NT x W sums,
    stored to the stack; then the VNNI tile's scaling, in the same order: the same integers,
    so the same floats. :data:`STEPS` products go before their stores, and a group's sums are
    scaled after the next group's products (software-pipelined); ``xc``, ``dx`` and ``xs``
    come transposed (block, token), so a tile's 16 tokens' values sit at constant offsets
    from one pointer (no spilled row pointers). Measured on a Xeon with AMX (BENCHMARKS.md,
    twentieth session) this is no faster than the VNNI tile, and neither was the plain
    order (zero, load, load, multiply, store, scale per block): every 32-weight block needs
    its own C tile stored and scaled, and (as we read the timings) each product waits on the
    tile registers it shares with the one before.
    Tiles: C 0-3, activations 4-5, weights 6-7."""
    _, wqt, wdt, wmt, xqt, xct, dxt, xst, _, _, dstt, _, _ = sig.args
    _, wq_v, wd_v, wm_v, xq_v, xc_v, dx_v, xs_v, t0_v, nb_v, dst_v, dt0, dr0 = args
    vi, vf = ir.VectorType(I32, W), ir.VectorType(F32, W)
    n_sc = 2 if half else 1
    k_bytes = 32 // n_sc  # activation bytes per tdpbsud
    group = STEPS // n_sc  # blocks per group
    shapes = {c: (NT, 4 * W) for c in range(STEPS)}
    shapes |= {4 + i: (NT, k_bytes) for i in range(2)}
    shapes |= {6 + i: (k_bytes // 4, 4 * W) for i in range(2)}
    amx.configure(builder, shapes)
    sums = cgutils.alloca_once(builder, ir.ArrayType(I32, 2 * STEPS * NT * W + 64))
    sums.align = 64
    sums_p = builder.bitcast(sums, I8.as_pointer())
    wq_p = data(context, builder, wqt, wq_v)
    wd_p = data(context, builder, wdt, wd_v)
    wm_p = data(context, builder, wmt, wm_v)
    xq_stride = cgutils.unpack_tuple(
        builder, context.make_array(xqt)(context, builder, xq_v).strides
    )[0]
    x0 = row_ptr(context, builder, xqt, xq_v, t0_v)
    t_at = builder.mul(t0_v, i64(4))

    def tokens(arytype, ary, row):  # &ary[row, t0]: the NT tokens' values 4 bytes apart
        return builder.gep(row_ptr(context, builder, arytype, ary, row), [t_at])

    accs = [Acc(builder, ir.Constant(vf, None)) for _ in range(NT)]

    def products(b0, n_blocks, buf):
        for c in range(n_blocks * n_sc):
            b, h = builder.add(b0, i64(c // n_sc)), c % n_sc
            amx.zero(builder, c)
            at = builder.add(builder.mul(b, i64(32)), i64(k_bytes * h))
            amx.load(builder, 4 + c % 2, builder.gep(x0, [at]), xq_stride)
            wat = builder.add(builder.mul(b, i64(32 * W)), i64(k_bytes * W * h))
            amx.load(builder, 6 + c % 2, builder.gep(wq_p, [wat]), i64(4 * W))
            amx.dot_su(builder, c, 4 + c % 2, 6 + c % 2)
        for c in range(n_blocks * n_sc):
            amx.store(builder, c, builder.gep(buf, [i64(4 * NT * W * c)]), i64(4 * W))

    def scale(b0, n_blocks, buf):
        for g in range(n_blocks):
            b = builder.add(b0, i64(g))
            dws, mw = _block_scales(builder, wd_p, wm_p, b, W, n_sc, has_min)
            dx_b = tokens(dxt, dx_v, b)
            xs_b = tokens(xst, xs_v, b) if has_min else None
            xc_b = [
                tokens(xct, xc_v, builder.add(builder.mul(b, i64(n_sc)), i64(h)))
                for h in range(n_sc)
            ]
            for i in range(NT):
                dxs = splat(builder, load(builder, dx_b, i64(4 * i), F32), W)
                acc = accs[i].get()
                for h in range(n_sc):
                    c = g * n_sc + h
                    isum = load(builder, buf, i64(4 * W * (NT * c + i)), vi)
                    if not has_min:
                        xc = splat(builder, load(builder, xc_b[h], i64(4 * i), I32), W)
                        isum = builder.add(xc, isum)
                    scale = builder.fmul(dws[h], dxs)
                    acc = _fma(builder, builder.sitofp(isum, vf), scale, acc)
                if has_min:
                    xsum = splat(builder, load(builder, xs_b, i64(4 * i), F32), W)
                    acc = _fma(builder, mw, xsum, acc)
                accs[i].set(acc)

    # software-pipelined: group j's products are stored to one half of the stack while group
    # j - 1's sums are scaled from the other
    n_groups = builder.udiv(nb_v, i64(group))
    half_at = i64(4 * STEPS * NT * W + 256)  # not 4 KiB apart, where loads may alias stores

    def buf(j):
        return builder.gep(sums_p, [builder.mul(builder.and_(j, i64(1)), half_at)])

    with cgutils.for_range(builder, n_groups) as loop:
        j = loop.index
        products(builder.mul(j, i64(group)), group, buf(j))
        with builder.if_then(builder.icmp_unsigned(">", j, i64(0))):
            prev = builder.sub(j, i64(1))
            scale(builder.mul(prev, i64(group)), group, buf(prev))
    with builder.if_then(builder.icmp_unsigned(">", n_groups, i64(0))):
        last = builder.sub(n_groups, i64(1))
        scale(builder.mul(last, i64(group)), group, buf(last))
    done = builder.mul(n_groups, i64(group))
    with cgutils.for_range(builder, builder.sub(nb_v, done)) as loop:  # the last blocks
        b0 = builder.add(done, loop.index)
        products(b0, 1, sums_p)
        scale(b0, 1, sums_p)
    amx.release(builder)
    _store_rows(context, builder, dstt, dst_v, dt0, dr0, accs)
    return context.get_dummy_value()


# ---------------------------------------------------------------------------------------------
# The driver: activations quantized per 32 (Q8_0) once, then per thread a contiguous run of
# W-row tiles, each packed once and multiplied with every block of NT tokens.


def _make_gemm(level: str, form: str, zero_point: int):
    """The int8 GEMM of one level and packed form (:data:`FORMS`)."""
    base = FORMS[form[len("grouped-") :]][0] if form.startswith("grouped-") else form
    tile_form = {"k4": "min", "k5": "min", "k6": "half", "k3": "half"}.get(base)
    if tile_form is None:
        tile_form = "zp" if zero_point else "min"
    kind = f"{level}/{tile_form}/{TOPS[base]}"
    _, W, NT, _, _ = tile_kind(kind)
    half = tile_form == "half"
    zp32, zp16 = (0, zero_point) if half else (zero_point, 0)
    pack_kind = f"{PANELS.get(level, level)}/{form}"  # a string: see int8pack.pack_panel
    transposed = level == "amx"

    @numba.njit(cache=True, parallel=True, nogil=True, error_model="numpy")
    def gemm(w, f16, x, xq, dx, xs, bs, xc, xc16, out, wq, wd, wm, spill):
        """out = x @ W.T; ``w`` the weight's arrays (relayout.PairedBlocks' qs, qs as uint32,
        d, m, qh; or the GGML blocks first); the activation scratch (xq, dx, xs, bs, xc, xc16) has
        T rounded up to NT rows; wq, wd, wm, spill one panel per thread chunk."""
        n_tok, rows = out.shape
        nbx = dx.shape[1]
        for t in range(n_tok):  # on this thread: one parallel region per call
            # the matvec's quantization (so the integer sums equal the row dots'), then the
            # zero points' share per 32 and per 16 from its sums per 16
            quantize_activations(x[t], 32, xq[t], dx[t], xs[t], bs[t])
            for b in range(nbx):
                s0, s1 = np.int32(bs[t, 2 * b]), np.int32(bs[t, 2 * b + 1])
                xc[t, b] = -zp32 * (s0 + s1)
                xc16[t, 2 * b] = -zp16 * s0
                xc16[t, 2 * b + 1] = -zp16 * s1
        xcs = xc16 if half else xc
        if transposed:  # (block, token): the AMX tile's layout (_amx_tile)
            xcs, dx, xs = xcs.T.copy(), dx.T.copy(), xs.T.copy()
        t_pad = xq.shape[0]
        n_chunks = wq.shape[0]
        n_tiles = (rows + W - 1) // W
        for c in numba.prange(n_chunks):
            for rt in range(n_tiles * c // n_chunks, n_tiles * (c + 1) // n_chunks):
                r0 = rt * W
                pack_panel(pack_kind, w, f16, r0, wq[c], wd[c], wm[c])
                for t0 in range(0, t_pad, NT):
                    if r0 + W <= rows and t0 + NT <= n_tok:
                        tile(kind, wq[c], wd[c], wm[c], xq, xcs, dx, xs, t0, nbx, out, t0, r0)
                    else:  # an edge: through this thread's spill tile
                        tile(kind, wq[c], wd[c], wm[c], xq, xcs, dx, xs, t0, nbx, spill[c], 0, 0)
                        for i in range(min(NT, n_tok - t0)):
                            for j in range(min(W, rows - r0)):
                                out[t0 + i, r0 + j] = spill[c, i, j]

    return gemm


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
    "Q3_K": ("k3", 4),  # grouped.py's records only (no GGML-layout panel packer)
}
RELAID = ("paired", "paired5", "split")  # forms packed from relayout.PairedBlocks
# the largest packed weight byte of each form: how many vpmaddubsw pair sums AVX2 may add as i16
TOPS = {"paired": 15, "paired5": 31, "split": 255, "k4": 15, "k5": 31, "k6": 63, "k3": 7}
_KERNELS: dict = {}
_lock = threading.Lock()
_local = threading.local()


def kernel_for(weight, level: str | None = None):
    """The GEMM of a prepared weight, or None: the re-laid 32-weight formats and the GGML
    blocks of Q4_K, Q5_K, Q6_K at the avx512 / avxvnni / avx2 levels (not Q8_0 at avx2:
    vpmaddubsw would saturate), and grouped.py's records of every type it lays out (Q3_K
    only so). ``level``: the tile level (:func:`tile_level`'s, when not given)."""
    name, level = weight.format.name, level or tile_level(weight)
    if name not in FORMS or level not in SHAPES or weight._kernel is None:
        return None
    if weight.grouped:  # grouped.py's types (avx512): packed from its records
        return _kernel(("grouped", name, level), level, f"grouped-{name}", FORMS[name][1])
    if weight.relaid != (FORMS[name][0] in RELAID):
        return None
    if level == "avx2" and name == "Q8_0":
        return None
    return _kernel((name, level), level, *FORMS[name])


def tile_level(weight) -> str:
    """The tile level of a prepared weight's GEMM: ``amx`` over its avx512 panels where AMX
    tiles run (:func:`trueno.quant.amx.enabled`), else its ISA level."""
    return "amx" if weight.isa == "avx512" and amx.enabled() else weight.isa


def _kernel(key, level: str, form: str, zero_point: int):
    fn = _KERNELS.get(key)
    if fn is None:
        with _lock:
            fn = _KERNELS.get(key)
            if fn is None:
                fn = _KERNELS[key] = _make_gemm(level, form, zero_point)
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
    level = tile_level(weight)  # once: the kernel and its scratch must agree
    run = kernel_for(weight, level)
    if run is None:
        return False
    from trueno.quant.base import F16_TO_F32

    n_tok, cols = xs.shape
    W, NT = SHAPES[level]
    t_pad = -(-n_tok // NT) * NT
    nbx = cols // 32
    size = max(t_pad, 2 * NT)

    def acts():
        return (
            np.zeros((size, cols), np.int8),
            np.zeros((size, nbx), np.float32),
            np.zeros((size, nbx), np.float32),
            np.zeros((size, 2 * nbx), np.int16),
            np.zeros((size, nbx), np.int32),
            np.zeros((size, 2 * nbx), np.int32),
        )

    key = ("acts", cols)
    bufs = _scratch(key, acts)
    if bufs[0].shape[0] < t_pad:
        size = t_pad
        bufs = _local.scratch[key] = acts()
    xq, dx, xsum, bs, xc, xc16 = (b[:t_pad] for b in bufs)
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
    elif weight.grouped:
        w = (weight._grouped,)
    else:
        w = (weight.blocks,)
    run(w, F16_TO_F32, xs, xq, dx, xsum, bs, xc, xc16, out, wq, wd, wm, spill)
    return True
