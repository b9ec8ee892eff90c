"""Two weight rows per 512-bit register for the multi-vector (B-vector) bodies at avx512.

At AVX-512 a 256-bit ``vpdpbusd`` and a 512-bit one issue at the same rate (measured on
Emerald Rapids: ~0.24 ns each, 12 independent chains), and so do 256- and 512-bit FMAs; but
once 512-bit uops are in flight the 256-bit ones lose port 1 (a 512-bit dot on one row's
eight blocks, the rest 256-bit, measured 5-16% slower). So the lane-per-block ``multi`` forms
of the paired Q4_0 / Q4_1 row dot (simd._paired_body) and of the Q4_K one (simd._kq_body)
run here on two rows at once: the low 256 bits of every register hold row r, the high 256
bits row r + 1, the activations broadcast to both halves. Each half runs exactly the integer
and float operations of the one-row form, lane for lane (the few reordered steps are exact:
see their comments), so each result stays bit-identical to it and to the one-vector row dot,
at about half the instructions per row.

Paired rows take this form when their block count is even (full groups of 8 blocks, at most
one step of 4, then at most one pair, as SmolLM2's 576 columns: 8 + 8 + 2 blocks;
Body.twin_step). The row loop (simd.rows_range_t) runs the one-row form otherwise, and on a
run's last row when the run is odd.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils

from trueno.quant.llvm_ir import (
    F16,
    F32,
    I8,
    I16,
    I32,
    I64,
    V16I16,
    Acc,
    f32,
    half,
    i64,
    lift_halves,
    llvm,
    load,
    maddwd,
    splat,
    transpose4x8,
    transpose8,
    transpose_add8,
    vconst,
    x86,
)

V64I8 = ir.VectorType(I8, 64)
V16I32 = ir.VectorType(I32, 16)
V16F32 = ir.VectorType(F32, 16)
V8I64 = ir.VectorType(I64, 8)
V2F32 = ir.VectorType(F32, 2)


def _shuf(builder, a, b, mask, n):
    """shufflevector of two 2n-lane twin vectors by the n-lane ``mask`` applied per half."""
    return builder.shuffle_vector(
        a, b, ir.Constant(ir.VectorType(I32, 2 * n), lift_halves(mask, n))
    )


def _cast(builder, v, ty):
    return builder.bitcast(v, ty)


def join(builder, a, b):
    """Two n-lane vectors -> one 2n-lane vector [a | b]."""
    n = a.type.count
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(I32, 2 * n), list(range(2 * n))))


def both_halves(builder, v):
    """An n-lane vector -> [v | v] (LLVM: a 256-bit broadcast load when v is loaded)."""
    n = v.type.count
    mask = ir.Constant(ir.VectorType(I32, 2 * n), list(range(n)) * 2)
    return builder.shuffle_vector(v, v, mask)


def _split_nibble_dwords(builder, qs):
    """llvm_ir._split_nibble_dwords on twin <8 x i64>."""
    blend = [0, 9, 2, 11, 4, 13, 6, 15]

    def merge(a, b):
        m = _shuf(builder, _cast(builder, a, V16I32), _cast(builder, b, V16I32), blend, 8)
        return builder.and_(_cast(builder, m, V64I8), vconst(V64I8, 0x0F))

    first = merge(qs, builder.shl(qs, vconst(V8I64, 28)))
    second = merge(builder.lshr(qs, vconst(V8I64, 32)), builder.lshr(qs, vconst(V8I64, 4)))
    return first, second


def nibbles_t(builder, packed):
    """llvm_ir.paired_nibbles_t (its qword-transpose form) on four twin <64 x i8> pairs."""
    p = [_cast(builder, v, V8I64) for v in packed]
    x0, x1 = (
        _shuf(builder, p[0], p[2], [0, 1, 4, 5], 4),
        _shuf(builder, p[0], p[2], [2, 3, 6, 7], 4),
    )
    y0, y1 = (
        _shuf(builder, p[1], p[3], [0, 1, 4, 5], 4),
        _shuf(builder, p[1], p[3], [2, 3, 6, 7], 4),
    )
    q = [_shuf(builder, x0, y0, [0, 4, 2, 6], 4), _shuf(builder, x0, y0, [1, 5, 3, 7], 4)]
    q += [_shuf(builder, x1, y1, [0, 4, 2, 6], 4), _shuf(builder, x1, y1, [1, 5, 3, 7], 4)]
    return [r for qs in q for r in _split_nibble_dwords(builder, qs)]


def nibbles_t4(builder, p0, p1):
    """llvm_ir.paired_nibbles_t4 (its qword form) on two twin <64 x i8> pairs."""
    a, b = _cast(builder, p0, V8I64), _cast(builder, p1, V8I64)
    out = []
    for s in range(2):
        out += _split_nibble_dwords(builder, _shuf(builder, a, b, [s, 4 + s, s + 2, 6 + s], 4))
    return out


ORDER = (0, 4, 2, 6, 1, 5, 3, 7)  # llvm_ir.hsums: vector j's sum in lane ORDER[j]


def twin_hsums(builder, vecs):
    """llvm_ir.hsums on twin <16 x f32> (up to 8): the same additions per half, the sums
    left in one <16 x f32>, lane h*8 + ORDER[j] holding vector j's sum of half h."""
    chunk = list(vecs) + [ir.Constant(V16F32, None)] * (8 - len(vecs))

    return transpose_add8(builder, chunk, lambda a, b, mask: _shuf(builder, a, b, mask, 8))


def _two(builder, a, b):
    """Two f32 scalars -> <2 x f32> [a, b]."""
    v = builder.insert_element(ir.Constant(V2F32, None), a, ir.Constant(I32, 0))
    return builder.insert_element(v, b, ir.Constant(I32, 1))


def _row_halves(builder, p0, p1, at):
    """The f16 at byte ``at`` of rows r (p0) and r + 1 (p1) -> <2 x f32>."""
    return _two(builder, half(builder, p0, at), half(builder, p1, at))


def _spread(builder, v2):
    """<2 x f32> [row r, row r + 1] -> <16 x f32>: each row's value on its half's 8 lanes."""
    return builder.shuffle_vector(v2, v2, ir.Constant(V16I32, [0] * 8 + [1] * 8))


def _scaled(builder, acc, dot, d16, dx, b):
    """acc += f32(dot) * (d16 * dx[b]): a block's i32 lanes of both rows scaled by their
    rows' d (spread) times the vector's dx, lane for lane the one-row form's product."""
    s16 = builder.fmul(d16, splat(builder, f32(builder, dx, b), 16))
    acc.set(_fma16(builder, builder.sitofp(dot, V16F32), s16, acc.get()))


def _x_twin(builder, x, at):
    """The 32 activation bytes at byte ``at`` of ``x`` on both halves (rows r, r + 1)."""
    return both_halves(builder, load(builder, x, at, ir.VectorType(I8, 32)))


def _f32_twin(builder, base, b0, n):
    """n f32 from element b0 of ``base`` (a vector's dx or xs) on both halves."""
    return both_halves(builder, load(builder, base, builder.mul(b0, i64(4)), ir.VectorType(F32, n)))


def _twin_halves(builder, p0, p1, b0, n):
    """n f16 from element b0 of rows r (p0) and r + 1 (p1) -> <2n x f32> [row r's | r + 1's]."""
    ty = ir.VectorType(I16, n)
    at = builder.mul(b0, i64(2))
    bits = join(builder, load(builder, p0, at, ty), load(builder, p1, at, ty))
    return builder.fpext(builder.bitcast(bits, ir.VectorType(F16, 2 * n)),
                         ir.VectorType(F32, 2 * n))  # fmt: skip


# a step of 4 blocks: the i32 dots' two 4-lane halves of each row added (lo + hi), and the
# <8 x f32> [y4 of row r | y4 of row r + 1] widened as the one-row form's y8, twice
STEP4_LO = ir.Constant(ir.VectorType(I32, 8), [0, 1, 2, 3, 8, 9, 10, 11])
STEP4_HI = ir.Constant(ir.VectorType(I32, 8), [4, 5, 6, 7, 12, 13, 14, 15])
STEP4_WIDE = ir.Constant(V16I32, [0, 1, 2, 3] + [8] * 4 + [4, 5, 6, 7] + [8] * 4)

# signed x . signed w as a u8 x s8 vpdpbusd: x + 128 (x ^ 0x80) against w, the accumulator
# started at -128 x each lane's four weights' sum (_weight_bias), which every vector shares
FLIP = vconst(V64I8, -128)


def _weight_bias(builder, w):
    """-128 x the sum of each dword lane's four signed weights of ``w`` (<64 x i8>)."""
    return builder.sub(ir.Constant(V16I32, None), _dpbusd(builder, None, FLIP, w))


def _signed_dot(builder, bias, w, xv):
    """The i32 lanes of x . w (both signed), from ``_weight_bias(w)``: exactly the one-row
    form's |w| . sign(x, w) lanes, one vpdpbusd."""
    return _dpbusd(builder, bias, builder.xor(xv, FLIP), w)


def _by_vector(builder, res, n):
    """twin_hsums' register -> one <2 x f32> per vector j < n: its sums of rows r, r + 1."""
    return [
        builder.shuffle_vector(
            res, res, ir.Constant(ir.VectorType(I32, 2), [ORDER[j], 8 + ORDER[j]])
        )
        for j in range(n)
    ]


def _dpbusd(builder, acc, u8, s8):
    acc = ir.Constant(V16I32, None) if acc is None else acc
    u8, s8 = _cast(builder, u8, V16I32), _cast(builder, s8, V16I32)
    return x86(builder, "llvm.x86.avx512.vpdpbusd.512", V16I32, acc, u8, s8)


def _fma16(builder, a, b, c):
    return llvm(builder, "llvm.fma.v16f32", V16F32, a, b, c)


class _TwinVec:
    """One activation vector's pointers and its twin (two-row) accumulators."""

    def __init__(self, builder, ptrs):
        self.x, self.dx, self.xs = ptrs[:3]
        zero = ir.Constant(V16F32, None)
        self.acc0 = Acc(builder, zero)  # the one-row form's accs[0] (groups of 8)
        self.acc1 = Acc(builder, zero)  # its accs[1] (the step of 4, a last pair's odd block)
        self.corr = Acc(builder, zero)  # its corr_v


def paired_rows_body(has_min, offset):
    """The two-row B-vector body of Q4_0 (offset 8) / Q4_1 (has_min) in the paired layout:
    ``fn(builder, w0, w1, vecs, nb)`` with w0, w1 the (qs, d, m, qh) row pointers of rows r
    and r + 1 and ``vecs`` (xt, dx, xs, bs) pointers (xt lane-per-block,
    fused.transpose_blocks); returns one <2 x f32> per vector: its results of rows r and
    r + 1 (side by side in the output). nb must be even (module docstring)."""

    def body(builder, w0, w1, vecs, nb):
        (qs0, d0, m0, _), (qs1, d1, m1, _) = w0, w1
        vs = [_TwinVec(builder, p) for p in vecs]

        def twin_pairs(pairs):
            ty = ir.VectorType(I8, 32)
            return [
                join(
                    builder,
                    load(builder, qs0, builder.mul(pr, i64(32)), ty),
                    load(builder, qs1, builder.mul(pr, i64(32)), ty),
                )
                for pr in pairs
            ]

        groups = builder.udiv(nb, i64(8))
        with cgutils.for_range(builder, groups) as loop:
            b0 = builder.mul(loop.index, i64(8))
            dv = _twin_halves(builder, d0, d1, b0, 8)
            cv = _twin_halves(builder, m0, m1, b0, 8) if has_min else dv
            pairs = [builder.add(builder.mul(loop.index, i64(4)), i64(k)) for k in range(4)]
            qv = nibbles_t(builder, twin_pairs(pairs))
            base = builder.mul(b0, i64(32))
            for v in vs:
                s16 = builder.fmul(dv, _f32_twin(builder, v.dx, b0, 8))
                v.corr.set(_fma16(builder, cv, _f32_twin(builder, v.xs, b0, 8), v.corr.get()))
                accs = [None, None]
                for t, q in enumerate(qv):
                    xv = _x_twin(builder, v.x, builder.add(base, i64(32 * t)))
                    accs[t % 2] = _dpbusd(builder, accs[t % 2], q, xv)
                isum = builder.sitofp(builder.add(*accs), V16F32)
                v.acc0.set(_fma16(builder, isum, s16, v.acc0.get()))

        b4 = builder.mul(groups, i64(8))
        has4 = builder.icmp_unsigned(">=", builder.sub(nb, b4), i64(4))
        with builder.if_then(has4):  # the one-row form's step of 4
            v8f32 = ir.VectorType(F32, 8)
            dv = _twin_halves(builder, d0, d1, b4, 4)
            cv = _twin_halves(builder, m0, m1, b4, 4) if has_min else dv
            pairs = [builder.add(builder.mul(groups, i64(4)), i64(k)) for k in range(2)]
            qv = nibbles_t4(builder, *twin_pairs(pairs))
            base = builder.mul(b4, i64(32))
            zero8 = ir.Constant(v8f32, None)
            for v in vs:
                s8 = builder.fmul(dv, _f32_twin(builder, v.dx, b4, 4))
                c8 = builder.fmul(cv, _f32_twin(builder, v.xs, b4, 4))
                acc = None
                for t, q in enumerate(qv):
                    xv = _x_twin(builder, v.x, builder.add(base, i64(32 * t)))
                    acc = _dpbusd(builder, acc, q, xv)
                tot = builder.add(builder.shuffle_vector(acc, acc, STEP4_LO),
                                  builder.shuffle_vector(acc, acc, STEP4_HI))  # fmt: skip
                y8 = builder.fmul(builder.sitofp(tot, v8f32), s8)
                y16 = builder.shuffle_vector(y8, zero8, STEP4_WIDE)
                v.acc1.set(builder.fadd(v.acc1.get(), y16))  # acc1 (zero) + y
                c16 = builder.shuffle_vector(c8, zero8, STEP4_WIDE)
                v.corr.set(builder.fadd(v.corr.get(), c16))

        # the one-row form's last pair (nb % 4 == 2: e.g. 576 columns = 8 + 8 + 2 blocks): each
        # block's eight i32 lanes scaled by its d * dx into acc0 (the pair's low nibbles) or
        # acc1 (high), its min (Q4_1) or d (Q4_0) times its activation sum into corr_s
        start = builder.add(builder.mul(groups, i64(4)), builder.select(has4, i64(2), i64(0)))
        npair = builder.udiv(nb, i64(2))
        # every vector's corr_s in one register, in the lanes twin_hsums leaves its sums in
        # (lane h*8 + ORDER[j]: vector j, row r + h); the other lanes add 0.0, which changes
        # nothing, and without a last pair the register stays zero, as the one-row form's
        corr_s = Acc(builder, ir.Constant(V16F32, None))
        zero2 = ir.Constant(V2F32, None)
        into = [ir.Constant(V16I32, [0 if k == ORDER[j] else 1 if k == 8 + ORDER[j] else 2
                                     for k in range(16)]) for j in range(len(vs))]  # fmt: skip
        with cgutils.for_range_slice(builder, start, npair, i64(1)) as (pair, _):
            (pq,) = twin_pairs([pair])
            halves = (builder.and_(pq, vconst(V64I8, 0x0F)), builder.lshr(pq, vconst(V64I8, 4)))
            for j, q in enumerate(halves):
                b = builder.add(builder.mul(pair, i64(2)), i64(j))
                at = builder.mul(b, i64(2))
                d2 = _row_halves(builder, d0, d1, at)
                d16 = _spread(builder, d2)
                c2 = _row_halves(builder, m0, m1, at) if has_min else d2
                for k, v in enumerate(vs):
                    dot = _dpbusd(builder, None, q, _x_twin(builder, v.x, builder.mul(b, i64(32))))
                    _scaled(builder, v.acc1 if j else v.acc0, dot, d16, v.dx, b)
                    xs2 = splat(builder, f32(builder, v.xs, b), 2)
                    lanes = builder.shuffle_vector(builder.fmul(c2, xs2), zero2, into[k])
                    corr_s.set(builder.fadd(corr_s.get(), lanes))

        # the one-row form's epilogue, lane for lane: sum_states of its four accumulators (the
        # last two zero), hsums, the scalar correction added, then the offset or the min term
        zero = ir.Constant(V16F32, None)
        totals = [
            builder.fadd(builder.fadd(builder.fadd(v.acc0.get(), v.acc1.get()), zero), zero)
            for v in vs
        ]
        tot, corr = twin_hsums(builder, totals), twin_hsums(builder, [v.corr.get() for v in vs])
        corr = builder.fadd(corr, corr_s.get())
        if has_min:
            res = builder.fadd(tot, corr)
        else:
            res = builder.fsub(tot, builder.fmul(vconst(V16F32, float(offset)), corr))
        return _by_vector(builder, res, len(vs))

    return body


def split_q8_rows_body():
    """The two-row B-vector body of Q8_0 with split scales (simd._split_q8_dot's VNNI multi
    form): ``fn(builder, w0, w1, vecs, nb)`` as :func:`paired_rows_body`'s, any nb. Per group
    of 8 blocks the two rows' weights as u8 w + 128 lane-per-block (one transpose for both),
    each vector's eight 512-bit dots less 128 times its block sums (from bs); then one step
    of 4 blocks; each block left over as w + 128 dotted with x less 128 times x's four-byte
    sums (the same eight integer lanes as the one-row form's |w| . sign(x, w)). The float
    operations are the one-row form's, lane for lane."""
    v8f32 = ir.VectorType(F32, 8)
    v8i16, v4i32 = ir.VectorType(I16, 8), ir.VectorType(I32, 4)

    def body(builder, w0, w1, vecs, nb):
        (qs0, d0, _, _), (qs1, d1, _, _) = w0, w1
        vs = [_TwinVec(builder, p) for p in vecs]
        bss = [p[3] for p in vecs]

        def twin_blocks(b):
            """Block b of both rows, signed."""
            at = builder.mul(b, i64(32))
            ty = ir.VectorType(I8, 32)
            return join(builder, load(builder, qs0, at, ty), load(builder, qs1, at, ty))

        def unsigned_blocks(b):  # w + 128 as u8
            return builder.xor(twin_blocks(b), FLIP)

        def offsets(bs, b0, n):
            """128 x the block sums of x (one-row form's offset_sums), on both halves."""
            if n == 8:
                sums = maddwd(builder, load(builder, bs, builder.mul(b0, i64(4)), V16I16),
                              vconst(V16I16, 1))  # fmt: skip
            else:
                sums = x86(builder, "llvm.x86.sse2.pmadd.wd", v4i32,
                           load(builder, bs, builder.mul(b0, i64(4)), v8i16),
                           vconst(v8i16, 1))  # fmt: skip
            return both_halves(builder, builder.shl(sums, vconst(sums.type, 7)))

        groups = builder.udiv(nb, i64(8))
        with cgutils.for_range(builder, groups) as loop:
            b0 = builder.mul(loop.index, i64(8))
            dv = _twin_halves(builder, d0, d1, b0, 8)
            ws = transpose8(builder, [unsigned_blocks(builder.add(b0, i64(k))) for k in range(8)],
                            twin=True)  # fmt: skip
            base = builder.mul(b0, i64(32))
            for v, bs in zip(vs, bss, strict=True):
                s16 = builder.fmul(dv, _f32_twin(builder, v.dx, b0, 8))
                accs = [None, None]
                for t, w in enumerate(ws):
                    xv = _x_twin(builder, v.x, builder.add(base, i64(32 * t)))
                    accs[t % 2] = _dpbusd(builder, accs[t % 2], w, xv)
                isum = builder.sub(builder.add(*accs), offsets(bs, b0, 8))
                v.acc0.set(_fma16(builder, builder.sitofp(isum, V16F32), s16, v.acc0.get()))

        b4 = builder.mul(groups, i64(8))
        has4 = builder.icmp_unsigned(">=", builder.sub(nb, b4), i64(4))
        with builder.if_then(has4):
            dv = _twin_halves(builder, d0, d1, b4, 4)  # [row r's 4 | row r + 1's 4]
            ws = transpose4x8(builder,
                              [unsigned_blocks(builder.add(b4, i64(k))) for k in range(4)],
                              twin=True)  # fmt: skip
            base = builder.mul(b4, i64(32))
            zero8 = ir.Constant(v8f32, None)
            for v, bs in zip(vs, bss, strict=True):
                s8 = builder.fmul(dv, _f32_twin(builder, v.dx, b4, 4))
                acc = None
                for t, w in enumerate(ws):
                    xv = _x_twin(builder, v.x, builder.add(base, i64(32 * t)))
                    acc = _dpbusd(builder, acc, w, xv)
                tot = builder.add(builder.shuffle_vector(acc, acc, STEP4_LO),
                                  builder.shuffle_vector(acc, acc, STEP4_HI))  # fmt: skip
                tot = builder.sub(tot, offsets(bs, b4, 4))
                y8 = builder.fmul(builder.sitofp(tot, v8f32), s8)
                y16 = builder.shuffle_vector(y8, zero8, STEP4_WIDE)
                v.acc1.set(builder.fadd(v.acc1.get(), y16))

        start = builder.add(b4, builder.select(has4, i64(4), i64(0)))
        with cgutils.for_range_slice(builder, start, nb, i64(1)) as (b, _):
            w = twin_blocks(b)
            bias = _weight_bias(builder, w)
            d16 = _spread(builder, _row_halves(builder, d0, d1, builder.mul(b, i64(2))))
            for v in vs:
                dot = _signed_dot(builder, bias, w, _x_twin(builder, v.x, builder.mul(b, i64(32))))
                _scaled(builder, v.acc1, dot, d16, v.dx, b)

        res = twin_hsums(builder, [builder.fadd(v.acc0.get(), v.acc1.get()) for v in vs])
        return _by_vector(builder, res, len(vs))

    return body


def ggml_q8_rows_body(block_bytes):
    """The two-row B-vector body of Q8_0 on GGML blocks (simd._legacy_body's, which has no
    lane-per-block form: a tied output head stays in the file's layout), ``fn(builder, w0, w1,
    vecs, nb)`` with w0, w1 the rows' block pointers and ``vecs`` (xq, dx, xs, bs) plain
    activations. Per block, both rows' 32 signed weights in one register; each vector's
    512-bit dot of x + 128 (u8) with them, its accumulator started at -128 * (the weights'
    sum per lane), which the rows share: exactly the one-row form's |w| . sign(x, w) lanes,
    for one vpdpbusd per vector (the x-side correction took a second). Scaled into the
    one-row form's accumulator of that block by the same d * dx product per lane (block_loop:
    block 4i + k into state k, the tail into state 0); its epilogue lane for lane."""

    def body(builder, w0, w1, vecs, nb):
        (p0,), (p1,) = w0, w1
        zero = ir.Constant(V16F32, None)
        accs = [[Acc(builder, zero) for _ in range(4)] for _ in vecs]

        def step(b, k):
            at = builder.mul(b, i64(block_bytes))
            ty = ir.VectorType(I8, 32)
            qs = builder.add(at, i64(2))
            w = join(builder, load(builder, p0, qs, ty), load(builder, p1, qs, ty))
            bias = _weight_bias(builder, w)  # both rows' share of every vector's dot
            d16 = _spread(builder, _row_halves(builder, p0, p1, at))
            for (x, dx, _, _), acc in zip(vecs, accs, strict=True):
                dot = _signed_dot(builder, bias, w, _x_twin(builder, x, builder.mul(b, i64(32))))
                _scaled(builder, acc[k], dot, d16, dx, b)

        quads = builder.udiv(nb, i64(4))
        with cgutils.for_range(builder, quads) as loop:
            base = builder.mul(loop.index, i64(4))
            for k in range(4):
                step(builder.add(base, i64(k)), k)
        with cgutils.for_range_slice(builder, builder.mul(quads, i64(4)), nb, i64(1)) as (b, _):
            step(b, 0)
        totals = []
        for acc in accs:  # sum_states: ((s0 + s1) + s2) + s3
            t = acc[0].get()
            for a in acc[1:]:
                t = builder.fadd(t, a.get())
            totals.append(t)
        res = twin_hsums(builder, totals)
        return _by_vector(builder, res, len(vecs))

    return body


def k4_rows_body(block_bytes, scales_mins):
    """The two-row B-vector body of Q4_K on GGML blocks (simd._kq_body's lane-per-block
    form at avx512, lane for lane): ``fn(builder, w0, w1, vecs, n)`` with w0, w1 the
    one-pointer weight tuples of rows r and r + 1, n super-blocks per row, ``vecs`` (xt, dx,
    xs, bs) pointers; ``scales_mins(builder, w, p)``: the super-block's (<8 x i16> scales,
    <8 x i16> mins) (simd._scales_mins_k4). Returns one <2 x f32> per vector (rows r, r + 1)."""
    v16i16 = ir.VectorType(I16, 16)
    pairs = [i // 2 for i in range(16)]

    def body(builder, w0, w1, vecs, n):
        (row0,), (row1,) = w0, w1
        zero = ir.Constant(V16F32, None)
        accs = [(Acc(builder, zero), Acc(builder, zero)) for _ in vecs]

        with cgutils.for_range(builder, n) as loop:
            sb = loop.index
            p = builder.mul(sb, i64(block_bytes))
            d = _spread(builder, _row_halves(builder, row0, row1, p))
            pm = builder.add(p, i64(2))
            dmin = _spread(builder, _row_halves(builder, row0, row1, pm))
            (sc_a, m_a), (sc_b, m_b) = scales_mins(builder, row0, p), scales_mins(builder, row1, p)
            # the scales as f32: |dot of a sub-block| <= 15 * 127 * 32 and scale <= 63 keep
            # their product below 2^24, so f32(dot) * f32(scale) is exactly the one-row
            # form's f32(dot * scale) (one vmulps instead of a two-uop vpmulld)
            sc = builder.sitofp(builder.zext(join(builder, sc_a, sc_b), V16I32), V16F32)
            m16 = join(builder, m_a, m_b)
            mins = builder.shuffle_vector(
                m16, m16, ir.Constant(ir.VectorType(I32, 32), pairs + [8 + k for k in pairs])
            )
            chunks = []
            for i in range(4):
                at = builder.add(p, i64(16 + 32 * i))
                ty = ir.VectorType(I8, 32)
                chunks.append(
                    join(builder, load(builder, row0, at, ty), load(builder, row1, at, ty))
                )
            qv = nibbles_t(builder, chunks)
            b0 = builder.mul(sb, i64(8))
            base = builder.mul(b0, i64(32))
            for ptrs, (acc, macc) in zip(vecs, accs, strict=True):
                x, dx, bs = ptrs[0], ptrs[1], ptrs[3]
                parts = [None, None]
                for t, q in enumerate(qv):
                    xv = both_halves(
                        builder,
                        load(builder, x, builder.add(base, i64(32 * t)), ir.VectorType(I8, 32)),
                    )
                    parts[t % 2] = _dpbusd(builder, parts[t % 2], q, xv)
                isum = builder.fmul(builder.sitofp(builder.add(*parts), V16F32), sc)
                bsums = both_halves(builder, load(builder, bs, builder.mul(sb, i64(32)), v16i16))
                mprod = x86(builder, "llvm.x86.avx512.pmaddw.d.512", V16I32, mins, bsums)
                dxs = load(builder, dx, builder.mul(sb, i64(4)), F32)
                dxv = builder.shuffle_vector(
                    builder.insert_element(
                        ir.Constant(ir.VectorType(F32, 1), None), dxs, ir.Constant(I32, 0)
                    ),
                    ir.Constant(ir.VectorType(F32, 1), None),
                    ir.Constant(ir.VectorType(I32, 16), [0] * 16),
                )
                acc.set(_fma16(builder, isum, builder.fmul(d, dxv), acc.get()))
                mscale = builder.fmul(dmin, dxv)
                macc.set(_fma16(builder, builder.sitofp(mprod, V16F32), mscale, macc.get()))
        diffs = [builder.fsub(acc.get(), macc.get()) for acc, macc in accs]
        res = twin_hsums(builder, diffs)
        return _by_vector(builder, res, len(vecs))

    return body
