"""AVX2 integer dot products for the fused quantized matvec, written as LLVM IR.

LLVM emits no ``vpmaddubsw``/``vpmaddwd`` from plain numba loops, so each row dot here is an
IR body built with llvmlite that calls the x86 intrinsics directly: ``pmaddubsw(unsigned
weights, signed activations)`` then ``pmaddwd`` with ones (or with the sub-block scales),
converted to f32 and accumulated with one FMA per block. Activations are quantized to int8
first (per 32 for Q4_0..Q8_0 as llama.cpp's Q8_0, per 256 for the K-quants as its Q8_K).

The bodies are named by the kernel records (kernels.py: ``"simd:legacy_dot"`` etc., factories
taking the record) and reached through one numba intrinsic, :func:`row_dot`, whose first
argument is a string literal naming the type, form and ISA level. Only the ISA level
kernels.chosen_level picks may run: an AVX2 instruction on a CPU without it kills the process.

numba's on-disk cache of the drivers in fused.py is stamped with fused.py only; fused.py drops
that cache itself when this file, llvm_ir.py or kernels.py changed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from trueno.quant import llvm_ir, row_pairs
from trueno.quant.llvm_ir import (
    F16,
    F32,
    I8,
    I16,
    I32,
    I64,
    V8F32,
    V8I32,
    V16I8,
    V16I16,
    V32I8,
    Acc,
    IntDots,
    block_loop,
    data,
    f32,
    fma,
    half,
    high_bits,
    hsum,
    hsums,
    i64,
    lanes,
    llvm,
    load,
    maddwd,
    nibbles,
    paired_nibbles_t,
    paired_nibbles_t4,
    reduce8,
    row_ptr,
    splat,
    sum_states,
    transpose4x8,
    transpose8,
    vconst,
    x86,
)


def cpu_has_avx2() -> bool:
    """True when the host CPU and numba's code-generation target have AVX2, FMA and F16C."""
    from trueno.quant.kernels import host_levels

    return "avx2" in host_levels()


def available() -> bool:
    """Whether the SIMD kernels may be used: the chosen ISA level (kernels.chosen_level, which
    reads TRUENO_QUANT_ISA / TRUENO_QUANT_SIMD) is not ``portable``."""
    from trueno.quant.kernels import chosen_level

    return chosen_level() != "portable"


# ---------------------------------------------------------------------------------------------
# The one row-dot intrinsic: the kernel record of a kind names its IR body


@dataclass(frozen=True)
class Body:
    """An IR row-dot body and how :func:`row_dot` / :func:`rows_dot` call it.

    ``ggml`` form: ``fn(builder, w, xq, dx, xs, bs, n)`` with ``w`` the row's first byte and
    ``n`` = row bytes // ``step_bytes``. ``relaid`` form: ``fn(builder, qs, d, m, qh, xq, dx,
    xs, nb)`` with row pointers into relayout.PairedBlocks and nb = d.shape[1]. ``xq`` is the
    int8 activation, ``dx`` its scale per block (f32 x itself for F16/BF16), ``xs`` =
    dx * (sum of xq) per 32 (legacy formats), ``bs`` the int16 sums of xq per 16 (K-quants).
    ``vectors``: the body takes a list of those activation pointer tuples instead of one
    (``fn(builder, w, vecs, n)``, ``fn(builder, qs, d, m, qh, vecs, nb)``), decodes the
    weights once for all and returns one f32 per vector. ``multi``: see
    :func:`rows_dot_t`."""

    fn: object
    relaid: bool = False
    step_bytes: int = 0
    vectors: bool = False
    # the multi-vector form of ``fn`` on lane-per-block activations (fused.transpose_blocks:
    # every full group of 8 blocks as an 8x8 dword transpose, ``bs`` passed too), the same
    # float operations per vector, so bit-identical to ``fn``; None: ``fn`` serves groups
    multi: object = None
    multi_vectors: int = 0  # vectors per weight decode of ``multi`` (0: the record's)
    # ``multi`` on two rows at once (row_pairs.py: ``fn(builder, w_r, w_r1, vecs, nb)`` ->
    # (results of row r, of row r + 1)), for rows whose block count is a multiple of
    # ``twin_step``; None: ``multi`` row by row
    twin_rows: object = None
    twin_step: int = 1  # the block counts (``n`` / ``nb``) ``twin_rows`` takes: multiples of it

    def emit(self, builder, weights, vecs, n) -> list:
        """The dots of the activation pointer tuples ``vecs`` (one per vector)."""
        if self.vectors:
            return self.fn(builder, *weights, vecs, n)
        return [self.fn(builder, *weights, *v, n) for v in vecs]


@functools.cache
def body_of(kind: str) -> Body:
    """kind ``"<GGML type>/<ggml|relaid>/<isa level>[/<vectors>]"`` -> the IR body its record
    names in ``row_dot`` / ``relaid_dot`` (the vector count is :func:`rows_dot`'s)."""
    from trueno.gguf.constants import GGMLType
    from trueno.quant.kernels import RECORDS, resolve

    name, form, level, *_ = kind.split("/")
    rec = RECORDS[GGMLType[name]]
    return resolve(rec.dots(form == "relaid")[level])(rec, level)


def _weights(context, builder, body, wty, wt, row):
    """(row pointers of the weight arrays, block count) for ``body``'s form."""
    arrays = [builder.extract_value(wt, i) for i in range(len(wty))]
    if body.relaid:
        rows = [row_ptr(context, builder, ty, a, row) for ty, a in zip(wty, arrays, strict=True)]
        d = context.make_array(wty[1])(context, builder, arrays[1])
        return rows, builder.extract_value(d.shape, 1)
    ary = context.make_array(wty[0])(context, builder, arrays[0])
    row_bytes = builder.extract_value(ary.shape, 1)
    base = builder.bitcast(ary.data, I8.as_pointer())
    w_row = builder.gep(base, [builder.mul(row, row_bytes)])
    return [w_row], builder.udiv(row_bytes, i64(body.step_bytes))


@intrinsic
def row_dot(typingctx, kind, w, row, xq, dx, xs, bs):
    """Row ``row`` of the weight arrays ``w`` (a tuple: ``(blocks,)`` or the four arrays of
    relayout.PairedBlocks) dotted with one quantized activation, by the body the kernel
    record names for ``kind`` (a string literal, see :func:`body_of`). Returns f32."""
    if not isinstance(kind, types.StringLiteral):
        return None
    body = body_of(kind.literal_value)

    def codegen(context, builder, sig, args):
        _, wty, _, xty, fty, _, bty = sig.args
        _, wt, row, xq_v, dx_v, xs_v, bs_v = args
        vec = [
            data(context, builder, xty, xq_v),
            data(context, builder, fty, dx_v),
            data(context, builder, fty, xs_v),
        ]
        if not body.relaid:
            vec.append(data(context, builder, bty, bs_v))
        weights, n = _weights(context, builder, body, wty, wt, row)
        return body.emit(builder, weights, [tuple(vec)], n)[0]

    return types.float32(kind, w, types.int64, xq, dx, xs, bs), codegen


def _rows_codegen(kind: str, transposed: bool, row_range: bool = False):
    """Codegen of :func:`rows_dot` / :func:`rows_dot_t` for ``kind`` (ending in /<vectors>);
    ``row_range``: :func:`rows_range_t`'s, a loop over rows around it (the vectors'
    pointers set up once, not per row)."""
    n_vec = int(kind.rsplit("/", 1)[1])
    body = body_of(kind)
    multi = body.multi if transposed else None

    def codegen(context, builder, sig, args):
        if row_range:
            _, wty, _, _, xty, fty, _, bty, _, oty, _ = sig.args
            _, wt, r0, r1, xq_v, dx_v, xs_v, bs_v, b0_v, out_v, ahead = args
        else:
            _, wty, _, xty, fty, _, bty, _, oty = sig.args
            _, wt, row, xq_v, dx_v, xs_v, bs_v, b0_v, out_v = args
        vecs = []
        for v in range(n_vec):
            b = builder.add(b0_v, i64(v))
            vec = [
                row_ptr(context, builder, xty, xq_v, b),
                row_ptr(context, builder, fty, dx_v, b),
                row_ptr(context, builder, fty, xs_v, b),
            ]
            if multi is not None or not body.relaid:
                vec.append(row_ptr(context, builder, bty, bs_v, b))
            vecs.append(tuple(vec))
        dsts = [
            row_ptr(context, builder, oty, out_v, builder.add(b0_v, i64(v))) for v in range(n_vec)
        ]

        def one_row(row):
            weights, n = _weights(context, builder, body, wty, wt, row)
            if multi:
                ys = multi(builder, *weights, vecs, n)
            else:
                ys = body.emit(builder, weights, vecs, n)
            for dst, y in zip(dsts, ys, strict=True):
                dst = builder.gep(dst, [builder.mul(row, i64(4))])
                builder.store(y, builder.bitcast(dst, F32.as_pointer()), align=4)

        if not row_range:
            one_row(row)
            return context.get_dummy_value()

        def prefetch(r):
            with builder.if_then(builder.icmp_signed(">", ahead, i64(0))):
                _prefetch(
                    context, builder, wty[0], builder.extract_value(wt, 0), builder.add(r, ahead)
                )

        first = r0
        if body.twin_rows is not None:  # rows two at a time where the form allows
            w0, nb = _weights(context, builder, body, wty, wt, r0)
            step = i64(body.twin_step)
            fits = builder.icmp_unsigned("==", builder.urem(nb, step), i64(0))
            twins = builder.select(fits, builder.sdiv(builder.sub(r1, r0), i64(2)), i64(0))
            with cgutils.for_range(builder, twins) as loop:
                r = builder.add(r0, builder.mul(loop.index, i64(2)))
                r_next = builder.add(r, i64(1))
                prefetch(r)
                prefetch(r_next)
                w_r, _ = _weights(context, builder, body, wty, wt, r)
                w_next, _ = _weights(context, builder, body, wty, wt, r_next)
                ys = body.twin_rows(builder, w_r, w_next, vecs, nb)
                for dst, y in zip(dsts, ys, strict=True):  # (row r, row r + 1) side by side
                    dst = builder.gep(dst, [builder.mul(r, i64(4))])
                    builder.store(y, builder.bitcast(dst, y.type.as_pointer()), align=4)
            first = builder.add(r0, builder.mul(twins, i64(2)))
        with cgutils.for_range_slice(builder, first, r1, i64(1)) as (r, _):
            prefetch(r)
            one_row(r)
        return context.get_dummy_value()

    return codegen


@intrinsic
def rows_dot(typingctx, kind, w, row, xq, dx, xs, bs, b0, out):
    """``out[b0 + v, row]`` = row ``row`` of ``w`` dotted with activation ``b0 + v`` for v in
    range(k), k the vector count ending ``kind`` (see :func:`body_of`); xq, dx, xs, bs and
    out are 2-D, one row per vector. Each result is bit-identical to :func:`row_dot`'s."""
    if not isinstance(kind, types.StringLiteral):
        return None
    sig = types.void(kind, w, types.int64, xq, dx, xs, bs, types.int64, out)
    return sig, _rows_codegen(kind.literal_value, False)


@intrinsic
def rows_dot_t(typingctx, kind, w, row, xt, dx, xs, bs, b0, out):
    """:func:`rows_dot` by the body's ``multi`` form, ``xt`` the int8 activations arranged
    lane-per-block (fused.transpose_blocks); the body's one-vector form where it has none
    (``xt`` is then read as plain xq: pass it only for bodies with a ``multi``)."""
    if not isinstance(kind, types.StringLiteral):
        return None
    sig = types.void(kind, w, types.int64, xt, dx, xs, bs, types.int64, out)
    return sig, _rows_codegen(kind.literal_value, True)


@intrinsic
def rows_range_t(typingctx, kind, w, r0, r1, xt, dx, xs, bs, b0, out, ahead):
    """:func:`rows_dot_t` for every row in [r0, r1), two at a time where the body has a
    ``twin_rows`` form, software-prefetching row ``r + ahead`` of ``w[0]`` first (``ahead`` 0:
    none). ``xt``: the activations the body reads, lane-per-block for a ``multi`` body, plain
    int8 for one without (GGML Q8_0's)."""
    if not isinstance(kind, types.StringLiteral):
        return None
    i = types.int64
    sig = types.void(kind, w, i, i, xt, dx, xs, bs, i, out, i)
    return sig, _rows_codegen(kind.literal_value, True, row_range=True)


def _legacy_body(block_bytes, has_min, has_high, offset, signed, dots):
    """Row dot for a 32-weight format: y = sum_b d*dx*(q . xq) + (m or -offset*d) * xs_b."""
    qs_at = 2 + (2 if has_min else 0) + (4 if has_high else 0)

    def body(builder, w, x, dx, xs, bs, n):
        def state():
            return Acc(builder, ir.Constant(V8F32, None)), Acc(builder, ir.Constant(F32, 0.0))

        def step(b, st):
            acc, corr = st
            p = builder.mul(b, i64(block_bytes))
            d = half(builder, w, p)
            xv = load(builder, x, builder.mul(b, i64(32)), V32I8)
            if signed:  # Q8_0: |w| . sign(x, w) keeps pmaddubsw's first operand unsigned
                wv = load(builder, w, builder.add(p, i64(qs_at)), V32I8)
                aw = llvm(builder, "llvm.abs.v32i8", V32I8, wv, ir.Constant(ir.IntType(1), 0))
                sx = x86(builder, "llvm.x86.avx2.psign.b", V32I8, xv, wv)
                isum = dots.u8s8(builder, aw, sx)
            else:
                q = nibbles(builder, load(builder, w, builder.add(p, i64(qs_at)), V16I8))
                if has_high:
                    qh_at = builder.add(p, i64(qs_at - 4))
                    bits = builder.bitcast(
                        load(builder, w, qh_at, I32), ir.VectorType(ir.IntType(1), 32)
                    )
                    hi = builder.shl(builder.zext(bits, V32I8), vconst(V32I8, 4))
                    q = builder.or_(q, hi)
                isum = dots.u8s8(builder, q, xv)
            s = builder.fmul(d, f32(builder, dx, b))
            acc.set(fma(builder, builder.sitofp(isum, V8F32), splat(builder, s, 8), acc.get()))
            if has_min or offset:
                c = half(builder, w, builder.add(p, i64(2))) if has_min else d
                corr.set(builder.fadd(corr.get(), builder.fmul(c, f32(builder, xs, b))))

        states = block_loop(builder, n, step, state)
        total = hsum(builder, sum_states(builder, states, 0))
        corr = sum_states(builder, states, 1)
        if has_min:
            return builder.fadd(total, corr)
        if offset:
            return builder.fsub(total, builder.fmul(ir.Constant(F32, float(offset)), corr))
        return total

    return body


def legacy_dot(rec, level) -> Body:
    """Q4_0, Q4_1, Q5_0, Q5_1 on GGML blocks."""
    dots = IntDots(level)
    fn = _legacy_body(rec.block_bytes, rec.has_min, rec.has_high, rec.zero_point, False, dots)
    return Body(fn, step_bytes=rec.block_bytes)


# vectors per weight read of GGML Q8_0's two-row body: its weight side is two loads and a
# vpdpbusd, and 4 vectors' 16 accumulators (4 block states each) leave registers for the
# rest; 8 measured slower (SmolLM2's head at B = 8, alternating runs: 1.96-2.18 ms vs 2.19-2.65)
MULTI_Q8_GGML = 4


def q8_0_dot(rec, level) -> Body:
    """Q8_0 on GGML blocks (a tied output head: the embedding's blocks in place). At avx512
    its B-vector driver runs rows two at a time (row_pairs.ggml_q8_rows_body)."""
    one = _legacy_body(rec.block_bytes, False, False, 0, True, IntDots(level))

    def each(builder, w, vecs, n):  # the one-row form per vector, the row read once
        return [one(builder, w, *v, n) for v in vecs]

    twin = row_pairs.ggml_q8_rows_body(rec.block_bytes) if level == "avx512" else None
    return Body(
        each,
        step_bytes=rec.block_bytes,
        vectors=True,
        multi_vectors=MULTI_Q8_GGML if twin else _multi_group(level),
        twin_rows=twin,
    )


# ---------------------------------------------------------------------------------------------
# 256-weight super-blocks: Q4_K, Q5_K, Q6_K (activations one int8 scale per 256, bs per 16)


def _words_to_i16(builder, words):
    """Two i32 words -> their 8 bytes zero-extended to <8 x i16>."""
    v = ir.Constant(ir.VectorType(I32, 2), None)
    for i, word in enumerate(words):
        v = builder.insert_element(v, word, ir.Constant(I32, i))
    return builder.zext(builder.bitcast(v, ir.VectorType(I8, 8)), ir.VectorType(I16, 8))


def _scales_mins_k4(builder, w, p):
    """The 12 packed scale bytes at w + p + 4 -> (<8 x i16> scales, <8 x i16> mins), with
    llama.cpp's word-mask unpacking instead of eight get_scale_min_k4 calls."""
    u0, u1, u2 = (load(builder, w, builder.add(p, i64(4 + 4 * i)), I32) for i in range(3))
    k1, k2, k3 = (ir.Constant(I32, v) for v in (0x3F3F3F3F, 0x0F0F0F0F, 0x03030303))
    c4, c6 = ir.Constant(I32, 4), ir.Constant(I32, 6)
    m_hi = builder.or_(
        builder.and_(builder.lshr(u2, c4), k2),
        builder.shl(builder.and_(builder.lshr(u1, c6), k3), c4),
    )
    m_lo = builder.and_(u1, k1)
    sc_hi = builder.or_(
        builder.and_(u2, k2), builder.shl(builder.and_(builder.lshr(u0, c6), k3), c4)
    )
    sc_lo = builder.and_(u0, k1)
    return _words_to_i16(builder, (sc_lo, sc_hi)), _words_to_i16(builder, (m_lo, m_hi))


def _bsums(builder, bs, sb):
    """The 16 int16 sums of xq (per 16) of super-block sb as <16 x i16>."""
    return load(builder, bs, builder.mul(sb, i64(32)), V16I16)


def _kq_body(block_bytes, has_high, dots, transposed=False):
    """Q4_K / Q5_K: y = sum_sb d*dx*sum_s sc_s (q . xq)_s - dmin*dx*sum_s m_s*bsum_s, for one
    or more activation vectors ``vecs`` ((xq, dx, xs, bs) pointers), the weights decoded once.
    The integer dot of each sub-block s lands in lane s (reduce8 of its eight partial sums;
    ``transposed``, the multi form: the sub-blocks decoded lane-per-block, their eight dots
    accumulated into one register), times its scale by one vpmulld (the multi form at AVX2:
    the scale in vpmaddwd instead of ones): the same integers in the same lanes either way,
    so the forms are bit-identical. One state per vector: each
    super-block is ~20 cycles, ample for the two FMA chains, and short rows (768 columns = 3
    super-blocks) need no unrolled loop's remainder path."""
    qs_at = 48 if has_high else 16
    pairs = [i // 2 for i in range(16)]

    def body(builder, w, vecs, n):
        vs = [_Vec(builder, p, 2, scalar_corr=False) for p in vecs]
        with cgutils.for_range(builder, n) as loop:
            sb = loop.index
            p = builder.mul(sb, i64(block_bytes))
            d, dmin = half(builder, w, p), half(builder, w, builder.add(p, i64(2)))
            sc8, m8 = _scales_mins_k4(builder, w, p)
            b0 = builder.mul(sb, i64(8))  # the super-block's first 32-weight sub-block
            # 32 bytes of qs hold sub-blocks 2i (low nibbles) and 2i + 1: the paired layout
            chunks = [
                load(builder, w, builder.add(p, i64(qs_at + 32 * i)), V32I8) for i in range(4)
            ]
            if transposed and not has_high:
                qv = paired_nibbles_t(builder, chunks, dots.level != "avx512")
            else:
                qh = load(builder, w, builder.add(p, i64(16)), V32I8) if has_high else None
                qv = []
                for s in range(8):
                    if s % 2 == 0:
                        q = builder.and_(chunks[s // 2], vconst(V32I8, 0x0F))
                    else:
                        q = builder.lshr(chunks[s // 2], vconst(V32I8, 4))
                    if has_high:
                        bit = builder.and_(builder.lshr(qh, vconst(V32I8, s)), vconst(V32I8, 1))
                        q = builder.or_(q, builder.shl(bit, vconst(V32I8, 4)))
                    qv.append((q, builder.add(b0, i64(s))))
                if transposed:
                    qv = transpose8(builder, [q for q, _ in qv])
            sc = builder.zext(sc8, V8I32)
            sc_pairs = lanes(builder, sc8, pairs)  # lane k's two i16: sub-block k's scale
            mins = lanes(builder, m8, pairs)
            for v in vs:
                acc, macc = v.accs
                if transposed and not dots.vnni:  # AVX2: the scale rides in vpmaddwd
                    isum = ir.Constant(V8I32, None)
                    for t, q in enumerate(qv):
                        at = builder.add(builder.mul(b0, i64(32)), i64(32 * t))
                        xv = load(builder, v.x, at, V32I8)
                        isum = dots.u8s8_scaled(builder, isum, q, xv, sc_pairs)
                else:
                    isum = builder.mul(_group_isum(builder, dots, v, b0, qv, transposed), sc)
                mprod = maddwd(builder, mins, _bsums(builder, v.bs, sb))
                dxs = f32(builder, v.dx, sb)
                scale = splat(builder, builder.fmul(d, dxs), 8)
                acc.set(fma(builder, builder.sitofp(isum, V8F32), scale, acc.get()))
                mscale = splat(builder, builder.fmul(dmin, dxs), 8)
                macc.set(fma(builder, builder.sitofp(mprod, V8F32), mscale, macc.get()))
        # one horizontal sum per row instead of two
        return hsums(builder, [builder.fsub(v.accs[0].get(), v.accs[1].get()) for v in vs])

    return body


@functools.cache
def _q6k_body(dots):
    """Q6_K: y = sum_sb d*dx*(sum_j sc_j (q . xq)_j - 32 * sum_j sc_j*bsum_j), j per 16, for
    one or more activation vectors ``vecs`` ((xq, dx, xs, bs) pointers): each 32-weight piece
    and its scales decoded once, then dotted with every vector in turn. Each vector's integer
    sums and float operations (two accumulators, super-blocks alternating) are those of one
    vector alone, so a row's result is the same bits whatever vectors share the decode."""

    def body(builder, w, vecs, n):
        def state():
            return tuple(Acc(builder, ir.Constant(V8F32, None)) for _ in vecs)

        def step(sb, st):
            p = builder.mul(sb, i64(210))
            d = half(builder, w, builder.add(p, i64(208)))
            sc16 = builder.sext(load(builder, w, builder.add(p, i64(192)), V16I8), V16I16)
            xbase = builder.mul(sb, i64(256))
            isums = [ir.Constant(V8I32, None) for _ in vecs]
            for h in range(2):
                ql0 = load(builder, w, builder.add(p, i64(64 * h)), V32I8)
                ql1 = load(builder, w, builder.add(p, i64(64 * h + 32)), V32I8)
                qh = load(builder, w, builder.add(p, i64(128 + 32 * h)), V32I8)
                for k in range(4):
                    src = ql0 if k % 2 == 0 else ql1
                    lo = (
                        builder.and_(src, vconst(V32I8, 0x0F))
                        if k < 2
                        else builder.lshr(src, vconst(V32I8, 4))
                    )
                    hi = builder.and_(builder.lshr(qh, vconst(V32I8, 2 * k)), vconst(V32I8, 3))
                    q = builder.or_(lo, builder.shl(hi, vconst(V32I8, 4)))
                    j0 = 8 * h + 2 * k
                    scv = lanes(builder, sc16, [j0] * 8 + [j0 + 1] * 8)
                    at = builder.add(xbase, i64(128 * h + 32 * k))
                    for v, (x, *_) in enumerate(vecs):
                        xv = load(builder, x, at, V32I8)
                        isums[v] = dots.u8s8_scaled(builder, isums[v], q, xv, scv)
            for v, (_, dx, _, bs) in enumerate(vecs):
                corr = maddwd(builder, sc16, _bsums(builder, bs, sb))
                isum = builder.sub(isums[v], builder.shl(corr, vconst(V8I32, 5)))
                s_all = builder.fmul(d, f32(builder, dx, sb))
                acc = fma(
                    builder, builder.sitofp(isum, V8F32), splat(builder, s_all, 8), st[v].get()
                )
                st[v].set(acc)

        states = block_loop(builder, n, step, state, unroll=2)
        return [hsum(builder, sum_states(builder, states, v)) for v in range(len(vecs))]

    return body


def k4_dot(rec, level) -> Body:
    """Q4_K, and Q5_K (has_high: the 5th bits of qh)."""
    args = (rec.block_bytes, rec.has_high, IntDots(level))
    twin = None
    if level == "avx512" and not rec.has_high:
        twin = row_pairs.k4_rows_body(rec.block_bytes, _scales_mins_k4)
    return Body(
        _kq_body(*args),
        step_bytes=rec.block_bytes,
        vectors=True,
        multi=_kq_body(*args, transposed=True),
        multi_vectors=_multi_group(level),
        twin_rows=twin,
    )


def q6_k_dot(rec, level) -> Body:
    # 4 vectors a decode at every level (8 at avx512 measured no faster at B = 8, and B = 4
    # then ran as pairs)
    return Body(_q6k_body(IntDots(level)), step_bytes=rec.block_bytes, vectors=True)


# ---------------------------------------------------------------------------------------------
# F16 / BF16 weights with f32 activations (passed in the ``dx`` slot), 16 per step


def _float_body(bf16):
    def body(builder, w, x, dx, xs, bs, n):
        v8i16 = ir.VectorType(I16, 8)

        def widen(bits):
            if bf16:
                wide = builder.shl(builder.zext(bits, V8I32), vconst(V8I32, 16))
                return builder.bitcast(wide, V8F32)
            return builder.fpext(builder.bitcast(bits, ir.VectorType(F16, 8)), V8F32)

        def state():
            return (Acc(builder, ir.Constant(V8F32, None)),)

        def step(i, st):
            e = builder.mul(i, i64(8))
            wv = widen(load(builder, w, builder.mul(e, i64(2)), v8i16))
            xv = load(builder, dx, builder.mul(e, i64(4)), V8F32)
            st[0].set(fma(builder, wv, xv, st[0].get()))

        states = block_loop(builder, builder.mul(n, i64(2)), step, state)
        return hsum(builder, sum_states(builder, states, 0))

    return body


def f16_dot(rec, level) -> Body:
    return Body(_float_body(False), step_bytes=32)  # 16 weights of 2 bytes per step


def bf16_dot(rec, level) -> Body:
    return Body(_float_body(True), step_bytes=32)


# ---------------------------------------------------------------------------------------------
# Q4_0, Q4_1, Q5_0, Q5_1 in the paired layout of relayout.py: 8 blocks per step share one
# vcvtph2ps of their scales and one 32-byte load per pair of blocks.


class _Vec:
    """One activation vector of a multi-vector body: its pointers and accumulators."""

    def __init__(self, builder, ptrs, n_acc, scalar_corr=True):
        self.x, self.dx, self.xs = ptrs[:3]
        self.bs = ptrs[3] if len(ptrs) > 3 else None
        self.accs = [Acc(builder, ir.Constant(V8F32, None)) for _ in range(n_acc)]
        self.corr_v = Acc(builder, ir.Constant(V8F32, None))
        self.corr_s = Acc(builder, ir.Constant(F32, 0.0)) if scalar_corr else None


def _group_isum(builder, dots, v, b0, qv, transposed):
    """<8 x i32> integer dots of blocks b0..b0+7 with vector ``v``: ``qv`` either eight
    (weights, block) of the plain layout (eight dots, reduce8) or eight lane-per-block
    registers (``transposed``: eight dots into one accumulator)."""
    if not transposed:
        sums = []
        for q, bj in qv:
            xv = load(builder, v.x, builder.mul(bj, i64(32)), V32I8)
            sums.append(dots.u8s8(builder, q, xv))
        return reduce8(builder, sums)
    base = builder.mul(b0, i64(32))
    accs = [None, None]  # two dependency chains (integer sums: any order gives the same)
    for t, q in enumerate(qv):
        xv = load(builder, v.x, builder.add(base, i64(32 * t)), V32I8)
        accs[t % 2] = dots.u8s8(builder, q, xv, accs[t % 2])
    return builder.add(*accs)


def _quad_isum(builder, dots, v, b4, qv, transposed):
    """<4 x i32> integer dots of blocks b4..b4+3 with vector ``v``: ``qv`` four (weights,
    block) of the plain layout (four dots, two phaddd), or four registers from
    transpose4x8 / paired_nibbles_t4 (four dots into one accumulator, its halves added)."""
    if transposed:
        base = builder.mul(b4, i64(32))
        acc = None
        for t, q in enumerate(qv):
            xv = load(builder, v.x, builder.add(base, i64(32 * t)), V32I8)
            acc = dots.u8s8(builder, q, xv, acc)
    else:
        sums = []
        for q, bj in qv:
            xv = load(builder, v.x, builder.mul(bj, i64(32)), V32I8)
            sums.append(dots.u8s8(builder, q, xv))

        def phadd(a, b):
            return x86(builder, "llvm.x86.avx2.phadd.d", V8I32, a, b)

        acc = phadd(phadd(sums[0], sums[1]), phadd(sums[2], sums[3]))
    return builder.add(lanes(builder, acc, [0, 1, 2, 3]), lanes(builder, acc, [4, 5, 6, 7]))


def _paired_body(has_min, has_high, offset, dots, transposed=False):
    """Paired-layout row dot over one or more activation vectors ``vecs`` (a list of
    (xq, dx, xs) pointers): the weights are decoded once, then each vector runs exactly the
    operations of the one-vector dot (so each result is bit-identical to it). ``transposed``:
    the multi form (Body.multi): each group of 8 blocks decoded lane-per-block, so the eight
    integer dots of a vector accumulate into one register whose lane k is block k's sum, the
    lanes reduce8 gives the one-vector form (same integers, the same float operations)."""

    def body(builder, qs, d, m, qh, vecs, nb):
        vs = [_Vec(builder, p, 4) for p in vecs]
        v8i16, v8f16 = ir.VectorType(I16, 8), ir.VectorType(F16, 8)

        def half8(base, b0):
            bits = load(builder, base, builder.mul(b0, i64(2)), v8i16)
            return builder.fpext(builder.bitcast(bits, v8f16), V8F32)

        def qh_word(b):
            return load(builder, qh, builder.mul(b, i64(4)), I32)

        def dot_block(v, q, b):
            xv = load(builder, v.x, builder.mul(b, i64(32)), V32I8)
            return builder.sitofp(dots.u8s8(builder, q, xv), V8F32)

        def pair_q(pair, b):
            v = load(builder, qs, builder.mul(pair, i64(32)), V32I8)
            lo = builder.and_(v, vconst(V32I8, 0x0F))
            hi = builder.lshr(v, vconst(V32I8, 4))
            if has_high:  # the pair's u64 of 5th bits, laid out by relayout.pair_blocks
                word = load(builder, qh, builder.mul(b, i64(4)), I64)
                v = builder.bitcast(splat(builder, word, 4), V8I32)
                bit_a = builder.lshr(v, ir.Constant(V8I32, [0, 0, 1, 1, 2, 2, 3, 3]))
                bit_b = builder.shl(v, ir.Constant(V8I32, [4, 4, 3, 3, 2, 2, 1, 1]))
                for_a = builder.and_(builder.bitcast(bit_a, V32I8), vconst(V32I8, 0x10))
                for_b = builder.and_(builder.bitcast(bit_b, V32I8), vconst(V32I8, 0x10))
                lo, hi = builder.or_(lo, for_a), builder.or_(hi, for_b)
            return lo, hi

        groups = builder.udiv(nb, i64(8))
        with cgutils.for_range(builder, groups) as loop:
            b0 = builder.mul(loop.index, i64(8))
            dv = half8(d, b0)
            cv = half8(m, b0) if has_min else dv
            pairs = [builder.add(builder.mul(loop.index, i64(4)), i64(k)) for k in range(4)]
            qv = []
            for k, pair in enumerate(pairs):
                if transposed and not has_high:
                    qv.append(load(builder, qs, builder.mul(pair, i64(32)), V32I8))
                    continue
                b = builder.add(b0, i64(2 * k))
                lo, hi = pair_q(pair, b)
                qv += [(q, builder.add(b, i64(j))) for j, q in enumerate((lo, hi))]
            if transposed:
                qv = (
                    transpose8(builder, [q for q, _ in qv])
                    if has_high
                    else paired_nibbles_t(builder, qv, dots.level != "avx512")
                )
            for v in vs:
                s8 = builder.fmul(dv, load(builder, v.dx, builder.mul(b0, i64(4)), V8F32))
                xsv = load(builder, v.xs, builder.mul(b0, i64(4)), V8F32)
                v.corr_v.set(fma(builder, cv, xsv, v.corr_v.get()))
                acc = v.accs[0]
                isum = builder.sitofp(_group_isum(builder, dots, v, b0, qv, transposed), V8F32)
                acc.set(fma(builder, isum, s8, acc.get()))

        def scalar_block(v, q, b, acc):
            s = builder.fmul(half(builder, d, builder.mul(b, i64(2))), f32(builder, v.dx, b))
            acc.set(fma(builder, dot_block(v, q, b), splat(builder, s, 8), acc.get()))
            c = half(builder, m if has_min else d, builder.mul(b, i64(2)))
            v.corr_s.set(builder.fadd(v.corr_s.get(), builder.fmul(c, f32(builder, v.xs, b))))

        # one 4-block step when at least 4 blocks remain (e.g. 640 columns = 8 + 8 + 4 blocks)
        v4i16, v4f16, v4f32 = ir.VectorType(I16, 4), ir.VectorType(F16, 4), ir.VectorType(F32, 4)
        b4 = builder.mul(groups, i64(8))
        has4 = builder.icmp_unsigned(">=", builder.sub(nb, b4), i64(4))
        with builder.if_then(has4):

            def half4(base):
                bits = load(builder, base, builder.mul(b4, i64(2)), v4i16)
                return builder.fpext(builder.bitcast(bits, v4f16), v4f32)

            dv = half4(d)
            cv = half4(m) if has_min else dv
            pairs = [builder.add(builder.mul(groups, i64(4)), i64(k)) for k in range(2)]
            qv = []
            for k, pair in enumerate(pairs):
                if transposed and not has_high:
                    qv.append(load(builder, qs, builder.mul(pair, i64(32)), V32I8))
                    continue
                b = builder.add(b4, i64(2 * k))
                lo, hi = pair_q(pair, b)
                qv += [(q, builder.add(b, i64(j))) for j, q in enumerate((lo, hi))]
            if transposed and has_high:
                qv = transpose4x8(builder, [q for q, _ in qv])
            elif transposed:
                qv = paired_nibbles_t4(builder, *qv, dots.level != "avx512")
            wide = ir.Constant(ir.VectorType(I32, 8), list(range(8)))
            zero4 = ir.Constant(v4f32, None)
            for v in vs:
                s4 = builder.fmul(dv, load(builder, v.dx, builder.mul(b4, i64(4)), v4f32))
                c4 = builder.fmul(cv, load(builder, v.xs, builder.mul(b4, i64(4)), v4f32))
                tot = _quad_isum(builder, dots, v, b4, qv, transposed)
                y4 = builder.fmul(builder.sitofp(tot, v4f32), s4)
                v.accs[1].set(
                    builder.fadd(v.accs[1].get(), builder.shuffle_vector(y4, zero4, wide))
                )
                v.corr_v.set(builder.fadd(v.corr_v.get(), builder.shuffle_vector(c4, zero4, wide)))

        npair = builder.udiv(nb, i64(2))
        start = builder.add(builder.mul(groups, i64(4)), builder.select(has4, i64(2), i64(0)))
        with cgutils.for_range_slice(builder, start, npair, i64(1)) as (pair, _):
            b = builder.mul(pair, i64(2))
            lo, hi = pair_q(pair, b)
            for v in vs:
                scalar_block(v, lo, b, v.accs[0])
                scalar_block(v, hi, builder.add(b, i64(1)), v.accs[1])
        odd = builder.icmp_unsigned("!=", builder.and_(nb, i64(1)), i64(0))
        with builder.if_then(odd):
            b = builder.sub(nb, i64(1))
            q = nibbles(builder, load(builder, qs, builder.mul(npair, i64(32)), V16I8))
            if has_high:
                q = builder.or_(q, high_bits(builder, qh_word(b)))
            for v in vs:
                scalar_block(v, q, b, v.accs[2])

        totals = hsums(builder, [sum_states(builder, [(a,) for a in v.accs], 0) for v in vs])
        corrs = hsums(builder, [v.corr_v.get() for v in vs])
        results = []
        for v, total, corr_v in zip(vs, totals, corrs, strict=True):
            corr = builder.fadd(corr_v, v.corr_s.get())
            if has_min:
                results.append(builder.fadd(total, corr))
            else:
                off = builder.fmul(ir.Constant(F32, float(offset)), corr)
                results.append(builder.fsub(total, off))
        return results

    return body


def _multi_group(level: str) -> int:
    """Vectors per weight decode of the lane-per-block bodies: 8 where AVX-512 gives 32
    vector registers (8 weight registers + 2 accumulators per vector), else 4."""
    return 8 if level == "avx512" else 4


def paired_dot(rec, level) -> Body:
    """Q4_0, Q4_1, Q5_0, Q5_1 in relayout.py's paired form."""
    args = (rec.has_min, rec.has_high, rec.zero_point, IntDots(level))
    multi = _paired_body(*args, transposed=True)
    group = _multi_group(level)
    twin = None
    if level == "avx512" and not rec.has_high:
        twin = row_pairs.paired_rows_body(rec.has_min, rec.zero_point)
    return Body(
        _paired_body(*args),
        relaid=True,
        vectors=True,
        multi=multi,
        multi_vectors=group,
        twin_rows=twin,
        twin_step=2,
    )


def _split_q8_dot(dots, builder, qs, d, m, qh, vecs, nb, transposed=False):
    """Q8_0 with split scales: |w| . sign(x, w) per block; 8 blocks reduced by phaddd and
    scaled by one vector of d * dx, then one step of 4 blocks (as the paired body's), the
    rest one at a time. ``vecs``: (xq, dx, xs) pointers of one or more activation vectors,
    the weights loaded once for all. ``transposed``: the multi form (Body.multi, (xq, dx,
    xs, bs) pointers): the 8- and 4-block steps lane-per-block; with VNNI the weights as u8
    w + 128 (one vpdpbusd per 32 bytes, no sign per vector) and 128 times the block's
    activation sum (from bs) taken off. The block sums are the same integers, so the results
    are bit-identical to the plain form."""
    vs = [_Vec(builder, p, 2, scalar_corr=False) for p in vecs]
    v4f32 = ir.VectorType(F32, 4)

    def weights(b):
        wv = load(builder, qs, builder.mul(b, i64(32)), V32I8)
        aw = llvm(builder, "llvm.abs.v32i8", V32I8, wv, ir.Constant(ir.IntType(1), 0))
        return wv, aw

    def block_dot(v, b, wv, aw, acc=None):
        xv = load(builder, v.x, builder.mul(b, i64(32)), V32I8)
        sx = x86(builder, "llvm.x86.avx2.psign.b", V32I8, xv, wv)
        return dots.u8s8(builder, aw, sx, acc)

    def step_weights(blocks, transpose):
        """The weights of a step: (w, |w|) per block, or lane-per-block registers."""
        if not transposed:
            return [weights(b) for b in blocks]
        raw = [load(builder, qs, builder.mul(b, i64(32)), V32I8) for b in blocks]
        if dots.vnni:  # w + 128 as u8
            return transpose(builder, [builder.xor(w, vconst(V32I8, 0x80)) for w in raw])
        absolute = functools.partial(llvm, builder, "llvm.abs.v32i8", V32I8)
        return [(w, absolute(w, ir.Constant(ir.IntType(1), 0))) for w in transpose(builder, raw)]

    def lane_dots(v, b0, ws):
        """Lane-per-block registers . the same of v's activations from block b0 on."""
        base = builder.mul(b0, i64(32))
        acc = None
        for t, w in enumerate(ws):
            xv = load(builder, v.x, builder.add(base, i64(32 * t)), V32I8)
            if dots.vnni:
                acc = dots.u8s8(builder, w, xv, acc)
            else:
                sx = x86(builder, "llvm.x86.avx2.psign.b", V32I8, xv, w[0])
                acc = dots.u8s8(builder, w[1], sx, acc)
        return acc

    def offset_sums(v, b0, n):
        """128 x (sum of xq) of blocks b0..b0+n-1 (n 8 or 4): what w + 128 added."""
        if n == 8:
            bs = load(builder, v.bs, builder.mul(b0, i64(4)), V16I16)
            sums = maddwd(builder, bs, vconst(V16I16, 1))
        else:
            v8i16, v4i32 = ir.VectorType(I16, 8), ir.VectorType(I32, 4)
            bs = load(builder, v.bs, builder.mul(b0, i64(4)), v8i16)
            sums = x86(builder, "llvm.x86.sse2.pmadd.wd", v4i32, bs, vconst(v8i16, 1))
        return builder.shl(sums, vconst(sums.type, 7))

    def group_isum(v, b0, blocks, ws):
        if not transposed:
            return reduce8(builder, [block_dot(v, b, *w) for b, w in zip(blocks, ws, strict=True)])
        acc = lane_dots(v, b0, ws)
        return builder.sub(acc, offset_sums(v, b0, 8)) if dots.vnni else acc

    def quad_isum(v, b4, blocks, ws):
        if transposed:
            acc = lane_dots(v, b4, ws)
        else:
            sums = [block_dot(v, b, *w) for b, w in zip(blocks, ws, strict=True)]

            def phadd(a, b):
                return x86(builder, "llvm.x86.avx2.phadd.d", V8I32, a, b)

            acc = phadd(phadd(sums[0], sums[1]), phadd(sums[2], sums[3]))
        tot = builder.add(lanes(builder, acc, [0, 1, 2, 3]), lanes(builder, acc, [4, 5, 6, 7]))
        return builder.sub(tot, offset_sums(v, b4, 4)) if transposed and dots.vnni else tot

    def scales(b0, n):
        vty, hty = ir.VectorType(I16, n), ir.VectorType(F16, n)
        bits = load(builder, d, builder.mul(b0, i64(2)), vty)
        return builder.fpext(builder.bitcast(bits, hty), ir.VectorType(F32, n))

    groups = builder.udiv(nb, i64(8))
    with cgutils.for_range(builder, groups) as loop:
        b0 = builder.mul(loop.index, i64(8))
        dv = scales(b0, 8)
        blocks = [builder.add(b0, i64(k)) for k in range(8)]
        ws = step_weights(blocks, transpose8)
        for v in vs:
            s8 = builder.fmul(dv, load(builder, v.dx, builder.mul(b0, i64(4)), V8F32))
            isum = builder.sitofp(group_isum(v, b0, blocks, ws), V8F32)
            v.accs[0].set(fma(builder, isum, s8, v.accs[0].get()))
    b4 = builder.mul(groups, i64(8))
    has4 = builder.icmp_unsigned(">=", builder.sub(nb, b4), i64(4))
    with builder.if_then(has4):
        dv = scales(b4, 4)
        blocks = [builder.add(b4, i64(k)) for k in range(4)]
        ws = step_weights(blocks, transpose4x8)
        wide = ir.Constant(ir.VectorType(I32, 8), list(range(8)))
        for v in vs:
            s4 = builder.fmul(dv, load(builder, v.dx, builder.mul(b4, i64(4)), v4f32))
            y4 = builder.fmul(builder.sitofp(quad_isum(v, b4, blocks, ws), v4f32), s4)
            y8 = builder.shuffle_vector(y4, ir.Constant(v4f32, None), wide)
            v.accs[1].set(builder.fadd(v.accs[1].get(), y8))
    start = builder.add(b4, builder.select(has4, i64(4), i64(0)))
    with cgutils.for_range_slice(builder, start, nb, i64(1)) as (b, _):
        dh = half(builder, d, builder.mul(b, i64(2)))
        w = weights(b)
        for v in vs:
            s = builder.fmul(dh, f32(builder, v.dx, b))
            isum = builder.sitofp(block_dot(v, b, *w), V8F32)
            v.accs[1].set(fma(builder, isum, splat(builder, s, 8), v.accs[1].get()))
    return hsums(builder, [builder.fadd(v.accs[0].get(), v.accs[1].get()) for v in vs])


def split_q8_0_dot(rec, level) -> Body:
    """Q8_0 with its scales split out (relayout.pair_blocks)."""
    dots = IntDots(level)
    multi = functools.partial(_split_q8_dot, dots, transposed=True)
    body = functools.partial(_split_q8_dot, dots)
    twin = row_pairs.split_q8_rows_body() if level == "avx512" else None
    return Body(
        body,
        relaid=True,
        vectors=True,
        multi=multi,
        multi_vectors=_multi_group(level),
        twin_rows=twin,
    )


# ---------------------------------------------------------------------------------------------
# Software prefetch: a decode matvec streams a small matrix once, and the hardware prefetcher
# ramps up too late on its short per-thread row runs; each row loop asks for a row ahead.


# prefetch_row's hint: 2 (prefetcht1: into L2, not L1). At 16 rows ahead, prefetcht0 keeps
# 16 rows in flight into the 48 KB L1D: 35 KB for Q8_0's 2176-byte rows of 2048 columns, so it
# evicts what the row dot is reading. Measured one thread at DRAM size (1 GiB rotation of
# 8192 x 2048 weights, 21 interleaved rounds, Xeon with 48 KB L1D / 4 MiB L2): prefetcht1 /
# prefetcht0 = 1.12 for Q8_0, 1.10 for Q6_K, 0.98-1.01 for Q4_0, Q4_1, Q5_0, Q4_K.
ROW_PREFETCH_LOCALITY = 2


@intrinsic
def prefetch_row(typingctx, arr, row):
    """Prefetch row ``row`` of a C-contiguous 2-D array into L2 (no-op past the end)."""

    def codegen(context, builder, sig, args):
        _prefetch(context, builder, sig.args[0], args[0], args[1], ROW_PREFETCH_LOCALITY)
        return context.get_dummy_value()

    return types.void(arr, row), codegen


def _prefetch(context, builder, arytype, value, row, locality=3):
    """The IR of :func:`prefetch_row`: ``llvm.prefetch`` of every cache line of the row with
    the ``locality`` hint (3: prefetcht0, into L1; 2: prefetcht1, into L2)."""
    ary = context.make_array(arytype)(context, builder, value)
    n_rows = builder.extract_value(ary.shape, 0)
    stride = builder.extract_value(ary.strides, 0)
    inside = builder.icmp_signed("<", row, n_rows)
    with builder.if_then(inside):
        base = builder.gep(builder.bitcast(ary.data, I8.as_pointer()), [builder.mul(row, stride)])
        lines = builder.udiv(builder.add(stride, i64(63)), i64(64))
        with cgutils.for_range(builder, lines) as loop:
            llvm_ir.prefetch(builder, builder.gep(base, [builder.mul(loop.index, i64(64))]),
                             locality)  # fmt: skip
