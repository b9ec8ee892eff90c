"""Small llvmlite IR builders shared by the SIMD kernels of simd.py: typed unaligned loads,
splats and lane shuffles, the x86 integer-dot and bf16-dot intrinsics, FMA, horizontal sums,
and a loop helper with several independent accumulators."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

I8, I16, I32, I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)


F32, F16 = ir.FloatType(), ir.HalfType()


V32I8, V16I8, V16I16, V8I32, V8F32 = (
    ir.VectorType(I8, 32),
    ir.VectorType(I8, 16),
    ir.VectorType(I16, 16),
    ir.VectorType(I32, 8),
    ir.VectorType(F32, 8),
)


def x86(builder, name, ret, *args):
    fnty = ir.FunctionType(ret, [a.type for a in args])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    return builder.call(fn, args)


def llvm(builder, name, ret, *args):
    return x86(builder, name, ret, *args)


def prefetch(builder, ptr, locality):
    """``llvm.prefetch`` (a read) of the cache line at i8* ``ptr`` with the ``locality`` hint
    (3: prefetcht0, into L1; 2: prefetcht1, into L2; 0: prefetchnta)."""
    llvm(builder, "llvm.prefetch.p0", ir.VoidType(), ptr, I32(0), I32(locality), I32(1))


def data(context, builder, arytype, value):
    """Pointer (i8*) to the first element of a numba array argument."""
    ary = context.make_array(arytype)(context, builder, value)
    return builder.bitcast(ary.data, I8.as_pointer())


def load(builder, base, offset, ty):
    """Unaligned load of ``ty`` at byte ``offset`` from i8* ``base``."""
    ptr = builder.gep(base, [offset])
    return builder.load(builder.bitcast(ptr, ty.as_pointer()), align=1)


def store(builder, value, base, offset):
    """Unaligned store of ``value`` at byte ``offset`` from i8* ``base`` (``load``'s twin)."""
    ptr = builder.gep(base, [offset])
    builder.store(value, builder.bitcast(ptr, value.type.as_pointer()), align=1)


def splat(builder, value, n):
    vty = ir.VectorType(value.type, n)
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(I32, 0))
    return builder.shuffle_vector(
        v, ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(I32, n), [0] * n)
    )


def vconst(ty, value):
    return ir.Constant(ty, [ir.Constant(ty.element, value)] * ty.count)


@intrinsic
def half_to_float(typingctx, bits):
    """The f16 value of uint16 bits as float32, by LLVM's fpext (vcvtph2ps under F16C; loops
    of it vectorize): a numba intrinsic."""

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], F16), F32)

    return types.float32(types.uint16), codegen


def half(builder, base, offset):
    bits = load(builder, base, offset, I16)
    return builder.fpext(builder.bitcast(bits, F16), F32)


def f32(builder, base, index):
    return load(builder, base, builder.mul(index, ir.Constant(I64, 4)), F32)


def concat16(builder, lo, hi):
    return builder.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(I32, 32), list(range(32))))


def nibbles(builder, packed16):
    """<16 x i8> packed -> <32 x i8>: low nibbles (weights 0-15) then high (16-31)."""
    lo = builder.and_(packed16, vconst(V16I8, 0x0F))
    hi = builder.lshr(packed16, vconst(V16I8, 4))
    return concat16(builder, lo, hi)


def maddubs(builder, u8, s8):
    return x86(builder, "llvm.x86.avx2.pmadd.ub.sw", V16I16, u8, s8)


def maddwd(builder, a16, b16):
    return x86(builder, "llvm.x86.avx2.pmadd.wd", V8I32, a16, b16)


def dot_u8s8(builder, u8, s8):
    """<32 x u8> . <32 x i8> -> <8 x i32> partial sums (AVX2: vpmaddubsw, vpmaddwd)."""
    return maddwd(builder, maddubs(builder, u8, s8), vconst(V16I16, 1))


def _as_v8i32(builder, v):
    return builder.bitcast(v, V8I32)


class IntDots:
    """The integer dot instructions of one ISA level, for the row-dot bodies of simd.py.

    ``avx2``: ``vpmaddubsw`` then ``vpmaddwd`` (two multiply uops per 32 bytes) and an add into
    the accumulator. ``avxvnni`` / ``avx512``: ``vpdpbusd`` (u8 x s8, four products summed into
    each i32 lane and accumulated: one uop) and ``vpdpwssd`` (``vpmaddwd`` fused with the add);
    the 256-bit forms (VEX under AVX-VNNI, EVEX under AVX512-VNNI + VL). Every body keeps its
    operands inside the ranges where ``vpmaddubsw`` cannot saturate (weights <= 128, int8
    activations in [-127, 127]), so each level's integer sums, and so each row dot, are
    bit-identical to the AVX2 ones."""

    def __init__(self, level: str):
        self.level = level
        self.vnni = level in ("avx512", "avxvnni")

    def u8s8(self, builder, u8, s8, acc=None):
        """acc + <32 x u8> . <32 x i8> as <8 x i32> (acc None: zero)."""
        if self.vnni:
            acc = ir.Constant(V8I32, None) if acc is None else acc
            return x86(
                builder,
                "llvm.x86.avx512.vpdpbusd.256",
                V8I32,
                acc,
                _as_v8i32(builder, u8),
                _as_v8i32(builder, s8),
            )
        dot = dot_u8s8(builder, u8, s8)
        return dot if acc is None else builder.add(acc, dot)

    def u8s8_scaled(self, builder, acc, u8, s8, scales):
        """acc + pmaddwd(pmaddubsw(u8, s8), scales): the 16 pair sums weighted by the <16 x
        i16> ``scales`` and summed in pairs into <8 x i32>."""
        pairs = maddubs(builder, u8, s8)
        if self.vnni:
            return x86(
                builder,
                "llvm.x86.avx512.vpdpwssd.256",
                V8I32,
                acc,
                _as_v8i32(builder, pairs),
                _as_v8i32(builder, scales),
            )
        return builder.add(acc, maddwd(builder, pairs, scales))


def fma(builder, a, b, c):
    return llvm(builder, "llvm.fma.v8f32", V8F32, a, b, c)


class _BFloat(ir.Type):
    """LLVM's ``bfloat``, which llvmlite's ir lacks: the operand type of the bf16 dot."""

    def _to_string(self) -> str:
        return "bfloat"

    def __eq__(self, other) -> bool:
        return isinstance(other, _BFloat)

    def __hash__(self) -> int:
        return hash("bfloat")


V32BF16 = ir.VectorType(_BFloat(), 32)
V16I32, V16F32 = ir.VectorType(I32, 16), ir.VectorType(F32, 16)


def dot_bf16(builder, acc, a, b):
    """vdpbf16ps (AVX512-BF16): acc[i] + a.lo[i] * b.lo[i] + a.hi[i] * b.hi[i] for <16 x
    float> acc and a, b <16 x i32>, each lane a pair of bf16 (low half first), the products
    exact and summed in float32. Only where the host and numba's target have avx512bf16."""
    a, b = builder.bitcast(a, V32BF16), builder.bitcast(b, V32BF16)
    return x86(builder, "llvm.x86.avx512bf16.dpbf16ps.512", V16F32, acc, a, b)


def hsum(builder, v):
    lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, 4), [0, 1, 2, 3]))
    hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, 4), [4, 5, 6, 7]))
    s = builder.fadd(lo, hi)
    s2 = builder.shuffle_vector(s, s, ir.Constant(ir.VectorType(I32, 4), [2, 3, 0, 1]))
    s = builder.fadd(s, s2)
    s3 = builder.shuffle_vector(s, s, ir.Constant(ir.VectorType(I32, 4), [1, 0, 3, 2]))
    s = builder.fadd(s, s3)
    return builder.extract_element(s, ir.Constant(I32, 0))


class Acc:
    """A mutable value kept in an entry-block alloca (mem2reg turns it into a register)."""

    def __init__(self, builder, init):
        self.builder = builder
        self.slot = cgutils.alloca_once_value(builder, init)

    def get(self):
        return self.builder.load(self.slot)

    def set(self, value):
        self.builder.store(value, self.slot)


def block_loop(builder, n, step_fn, make_state, unroll=4):
    """Run ``step_fn(index, state)`` for index in [0, n): ``unroll`` independent states (so
    the FMA / add chains overlap) in the main loop, state 0 for the tail. Returns the states."""
    states = [make_state() for _ in range(unroll)]
    groups = builder.udiv(n, i64(unroll))
    with cgutils.for_range(builder, groups) as loop:
        base = builder.mul(loop.index, i64(unroll))
        for k in range(unroll):
            step_fn(builder.add(base, i64(k)), states[k])
    with cgutils.for_range_slice(builder, builder.mul(groups, i64(unroll)), n, i64(1)) as (
        index,
        _,
    ):
        step_fn(index, states[0])
    return states


def sum_states(builder, states, i):
    vals = [st[i].get() for st in states]
    total = vals[0]
    for v in vals[1:]:
        total = (
            builder.fadd(total, v)
            if isinstance(v.type, ir.FloatType) or isinstance(v.type, ir.VectorType)
            else builder.add(total, v)
        )
    return total


def i64(v):
    return ir.Constant(I64, v)


def lanes(builder, vec, mask):
    """shufflevector of one vector with a constant lane list (LLVM lowers it to vpshufb)."""
    return builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(I32, len(mask)), mask))


def row_ptr(context, builder, arytype, value, row):
    ary = context.make_array(arytype)(context, builder, value)
    stride = builder.extract_value(ary.strides, 0)
    return builder.gep(builder.bitcast(ary.data, I8.as_pointer()), [builder.mul(row, stride)])


def high_bits(builder, word):
    """i32 of 5th bits -> <32 x i8> with 16 where the bit is set."""
    bits = builder.bitcast(word, ir.VectorType(ir.IntType(1), 32))
    return builder.shl(builder.zext(bits, V32I8), vconst(V32I8, 4))


def reduce8(builder, v):
    """Eight <8 x i32> partial sums -> <8 x i32> whose lane k is the total of v[k]
    (phaddd tree within 128-bit lanes, then the two halves added)."""

    def hadd(a, b):
        return x86(builder, "llvm.x86.avx2.phadd.d", V8I32, a, b)

    abcd = hadd(hadd(v[0], v[1]), hadd(v[2], v[3]))
    efgh = hadd(hadd(v[4], v[5]), hadd(v[6], v[7]))
    lo = builder.shuffle_vector(
        abcd, efgh, ir.Constant(ir.VectorType(I32, 8), [0, 1, 2, 3, 8, 9, 10, 11])
    )
    hi = builder.shuffle_vector(
        abcd, efgh, ir.Constant(ir.VectorType(I32, 8), [4, 5, 6, 7, 12, 13, 14, 15])
    )
    return builder.add(lo, hi)


# ---------------------------------------------------------------------------------------------
# Lane-per-block ("transposed") forms for the multi-vector bodies: eight 32-weight blocks so
# arranged that dword lane k of register t holds weights 4t..4t+3 of block k. Eight integer
# dots of those registers with the activations in the same arrangement (fused.transpose_blocks)
# leave block k's whole dot in lane k: no horizontal reduction per vector.


def lift_halves(mask, n):
    """A two-operand shuffle mask over n-lane vectors -> the same shuffle on each half of
    2n-lane vectors made of two independent n-lane halves."""
    out = []
    for h in range(2):
        for e in mask:
            out.append(h * n + e if e < n else 2 * n + h * n + (e - n))
    return out


def _dword_regs(builder, regs, twin):
    """``regs`` as dword vectors, an 8-lane dword shuffle (on each half when ``twin``), and
    the byte vector type to return."""
    n = 16 if twin else 8
    ty = ir.VectorType(I32, n)

    def shuf(a, b, mask):
        return builder.shuffle_vector(a, b, ir.Constant(ty, lift_halves(mask, 8) if twin else mask))

    return [builder.bitcast(v, ty) for v in regs], shuf, ir.VectorType(I8, 4 * n)


def transpose8(builder, regs, twin=False):
    """Eight <32 x i8> (or <8 x i32>) ``regs`` -> eight <32 x i8> where dword lane k of
    register t is dword t of ``regs[k]`` (an 8x8 dword transpose, 24 shuffles). ``twin``: the
    same on each 256-bit half of eight <64 x i8> (row_pairs.py: two rows per register)."""
    r, shuf, out_ty = _dword_regs(builder, regs, twin)

    lo = [shuf(r[2 * a], r[2 * a + 1], [0, 8, 1, 9, 4, 12, 5, 13]) for a in range(4)]
    hi = [shuf(r[2 * a], r[2 * a + 1], [2, 10, 3, 11, 6, 14, 7, 15]) for a in range(4)]
    even, odd = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]

    def quads(a, b):  # register t (t < 4): dwords t and t + 4 of blocks 4a..4a+3
        return [shuf(x, y, m) for x, y in ((lo[a], lo[b]), (hi[a], hi[b])) for m in (even, odd)]

    first, second = quads(0, 1), quads(2, 3)
    out = [None] * 8
    for t, (a, b) in enumerate(zip(first, second, strict=True)):
        out[t] = shuf(a, b, [0, 1, 2, 3, 8, 9, 10, 11])
        out[t + 4] = shuf(a, b, [4, 5, 6, 7, 12, 13, 14, 15])
    return [builder.bitcast(v, out_ty) for v in out]


def paired_nibbles_t(builder, packed, unpack=False):
    """Four <32 x i8> pairs of the paired 4-bit layout (relayout.py: byte j of pair i holds
    weight j of block 2i in its low nibble, of block 2i+1 in its high one) -> the eight blocks
    lane-per-block (see :func:`transpose8`). Two forms, measured per level: a qword transpose
    (8 shuffles) then per register 64-bit shifts, a dword blend and a nibble mask (LLVM
    lowers it to vpermt2d with AVX-512: the faster there); ``unpack``: dwords interleaved
    pair by pair (8 shuffles), then a nibble split and two unpacks (the faster on AVX2)."""
    if unpack:
        p = [builder.bitcast(v, V8I32) for v in packed]
        lo01, hi01 = _unpack_dwords(builder, p[0], p[1])
        lo23, hi23 = _unpack_dwords(builder, p[2], p[3])
        out = [None] * 8
        for t, (x, y) in ((0, (lo01, lo23)), (2, (hi01, hi23))):
            # dwords t, t + 1 (low half) and t + 4, t + 5 (high half) of pairs 0-3
            first = _shuf8(builder, x, y, [0, 1, 2, 3, 8, 9, 10, 11])
            second = _shuf8(builder, x, y, [4, 5, 6, 7, 12, 13, 14, 15])
            out[t], out[t + 1] = _nibble_unpack(builder, first)
            out[t + 4], out[t + 5] = _nibble_unpack(builder, second)
        return out
    v4i64 = ir.VectorType(I64, 4)
    p = [builder.bitcast(v, v4i64) for v in packed]

    def shuf(a, b, mask):
        return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(I32, len(mask)), mask))

    x0, x1 = shuf(p[0], p[2], [0, 1, 4, 5]), shuf(p[0], p[2], [2, 3, 6, 7])
    y0, y1 = shuf(p[1], p[3], [0, 1, 4, 5]), shuf(p[1], p[3], [2, 3, 6, 7])
    # q[s] holds qword s of pairs 0-3: dword lanes (2i, 2i+1) = dwords (2s, 2s+1) of pair i
    q = [shuf(x0, y0, [0, 4, 2, 6]), shuf(x0, y0, [1, 5, 3, 7])]
    q += [shuf(x1, y1, [0, 4, 2, 6]), shuf(x1, y1, [1, 5, 3, 7])]
    return [r for qs in q for r in _split_nibble_dwords(builder, qs)]


def paired_nibbles_t4(builder, p0, p1, unpack=False):
    """Two pairs (four blocks) of the paired 4-bit layout -> four registers, dword lane k of
    register t holding weights 4t..4t+3 of block k (k < 4) and 4(t+4).. of block k - 4
    (``unpack``: as :func:`paired_nibbles_t`)."""
    if unpack:
        lo, hi = _unpack_dwords(builder, builder.bitcast(p0, V8I32), builder.bitcast(p1, V8I32))
        return [*_nibble_unpack(builder, lo), *_nibble_unpack(builder, hi)]
    v4i64 = ir.VectorType(I64, 4)
    a, b = builder.bitcast(p0, v4i64), builder.bitcast(p1, v4i64)
    out = []
    for s in range(2):  # qwords s and s + 2 of both pairs
        mask = ir.Constant(ir.VectorType(I32, 4), [s, 4 + s, s + 2, 6 + s])
        out += _split_nibble_dwords(builder, builder.shuffle_vector(a, b, mask))
    return out


def _split_nibble_dwords(builder, qs):
    """<4 x i64> whose dword pairs (2i, 2i+1) are two dwords of one nibble-paired register
    -> (its first dwords, its second ones): lane 2i the low nibbles, lane 2i+1 the high ones,
    by 64-bit shifts, a dword blend and a nibble mask."""
    v4i64 = qs.type
    blend = ir.Constant(ir.VectorType(I32, 8), [0, 9, 2, 11, 4, 13, 6, 15])

    def merge(a, b):  # even dword lanes of a, odd of b, each byte's low nibble
        m = builder.shuffle_vector(builder.bitcast(a, V8I32), builder.bitcast(b, V8I32), blend)
        return builder.and_(builder.bitcast(m, V32I8), vconst(V32I8, 0x0F))

    first = merge(qs, builder.shl(qs, vconst(v4i64, 28)))
    second = merge(builder.lshr(qs, vconst(v4i64, 32)), builder.lshr(qs, vconst(v4i64, 4)))
    return first, second


def _shuf8(builder, a, b, mask):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(I32, 8), mask))


def _unpack_dwords(builder, a, b):
    """(vpunpckldq, vpunpckhdq) of two <8 x i32>."""
    return (
        _shuf8(builder, a, b, [0, 8, 1, 9, 4, 12, 5, 13]),
        _shuf8(builder, a, b, [2, 10, 3, 11, 6, 14, 7, 15]),
    )


def _nibble_unpack(builder, q):
    """<8 x i32> of nibble-paired dwords [a0 b0 a1 b1 | a4 b4 a5 b5 ...] (a of one pair, b
    of the next) -> its low nibbles L and high nibbles H interleaved by dword: (unpacklo(L,
    H), unpackhi(L, H)); lanes then alternate the pairs' even and odd blocks."""
    v = builder.bitcast(q, V32I8)
    lo = builder.and_(v, vconst(V32I8, 0x0F))
    hi = builder.and_(builder.lshr(v, vconst(V32I8, 4)), vconst(V32I8, 0x0F))
    lo, hi = builder.bitcast(lo, V8I32), builder.bitcast(hi, V8I32)
    return [builder.bitcast(r, V32I8) for r in _unpack_dwords(builder, lo, hi)]


def transpose4x8(builder, regs, twin=False):
    """Four <32 x i8> blocks -> four registers, dword lane k of register t holding dword t of
    block k (k < 4) and dword t + 4 of block k - 4 (8 shuffles); ``twin`` as transpose8's."""
    r, shuf, out_ty = _dword_regs(builder, regs, twin)

    lo01, lo23 = (shuf(r[i], r[i + 1], [0, 8, 1, 9, 4, 12, 5, 13]) for i in (0, 2))
    hi01, hi23 = (shuf(r[i], r[i + 1], [2, 10, 3, 11, 6, 14, 7, 15]) for i in (0, 2))
    out = []
    for x, y in ((lo01, lo23), (hi01, hi23)):
        out += [shuf(x, y, [0, 1, 8, 9, 4, 5, 12, 13]), shuf(x, y, [2, 3, 10, 11, 6, 7, 14, 15])]
    return [builder.bitcast(v, out_ty) for v in out]


def transpose_add8(builder, chunk, shuf):
    """The sums of eight vectors of 8 lanes (or of twin 8-lane halves, by ``shuf``: (a, b, an
    8-lane mask) -> the shuffled vector) left in one register, 12 shuffles and 7 adds: lane
    (0, 4, 2, 6, 1, 5, 3, 7)[j] holds vector j's sum."""
    # v_i + v_{i+4}: vectors a, b in one register's halves
    t = [
        builder.fadd(
            shuf(chunk[i], chunk[i + 1], [0, 1, 2, 3, 8, 9, 10, 11]),
            shuf(chunk[i], chunk[i + 1], [4, 5, 6, 7, 12, 13, 14, 15]),
        )
        for i in range(0, 8, 2)
    ]
    # (v0 + v4) + (v2 + v6) and (v1 + v5) + (v3 + v7): vectors a, c | b, d
    u = [
        builder.fadd(
            shuf(t[i], t[i + 1], [0, 1, 8, 9, 4, 5, 12, 13]),
            shuf(t[i], t[i + 1], [2, 3, 10, 11, 6, 7, 14, 15]),
        )
        for i in (0, 2)
    ]
    # the last addition: lanes hold vectors 0 4 2 6 1 5 3 7
    return builder.fadd(
        shuf(u[0], u[1], [0, 8, 2, 10, 4, 12, 6, 14]), shuf(u[0], u[1], [1, 9, 3, 11, 5, 13, 7, 15])
    )


def hsums(builder, vecs):
    """[hsum(v) for v in vecs], bit for bit (the same additions, operands swapped at most),
    eight <8 x f32> at a time packed into one register: 21 shuffles and adds per eight."""
    out = []
    for c in range(0, len(vecs), 8):
        chunk = list(vecs[c : c + 8])
        n = len(chunk)
        if n == 1:
            out.append(hsum(builder, chunk[0]))
            continue
        chunk += [ir.Constant(V8F32, None)] * (8 - n)

        def shuf(a, b, mask):
            return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(I32, 8), mask))

        w = transpose_add8(builder, chunk, shuf)
        order = [0, 4, 2, 6, 1, 5, 3, 7]  # vector j sits in lane order[j]
        out += [builder.extract_element(w, ir.Constant(I32, order[j])) for j in range(n)]
    return out
