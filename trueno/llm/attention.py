"""Decode attention: one query token over the KV cache, at the cache's bandwidth.

For each KV head, the ``G`` query heads of its GQA group read its keys and values once, a
block of ``ATTN_BLOCK`` positions at a time, with an online softmax (running max and sum), so
scores, softmax and the V sum are one pass:

- scores: each key chunk is loaded (f16 rows widened by vcvtph2ps as they load, no separate
  pass) once and multiplied into the accumulators of up to four heads (a bigger group runs in
  chunks of four, the block's rows coming again from L1); eight rows' dot vectors per head
  are reduced together by one 8x8 transpose-add (a handful of shuffles per eight positions
  instead of a horizontal sum per position);
- values: stripes of the G output rows stay in registers while the block's value rows stream
  past, each value chunk loaded (and widened) once for up to four heads;
- both kernels prefetch the rows ``PREFETCH_AHEAD`` positions on into L2 as they go, so the
  DRAM stream keeps running under the compute (two threads' compute alone would read about
  41 GB/s on Zen 4, about what DRAM gives: without the prefetch the two took turns);
- work is split over threads as (KV head, slice of positions) tasks, each with its own
  running max / sum / output, merged at the end (the max-rescaled sums of flash-decoding).

The two vector kernels are LLVM IR (llvmlite) of generic vectors, at a lane count per ISA
level: 16 lanes with 24 accumulators where the host has AVX-512 (32 registers), 8 lanes with
12 on AVX2 + FMA + F16C hosts, used when ``head_dim`` is a multiple of the lanes; otherwise
plain numba loops compute the same thing. This module imports numba; :mod:`trueno.llm.kernels`
re-exports its kernels.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from trueno.backends.numba_cache import drop_stale, launch_threads
from trueno.cpu import cpu_features
from trueno.quant.llvm_ir import (
    F16,
    F32,
    I32,
    V8F32,
    Acc,
    data,
    half_to_float,
    i64,
    llvm,
    load,
    prefetch,
    splat,
)

drop_stale(__file__, ("../quant/llvm_ir.py",))
launch_threads()  # attend_threaded, attend_rows: cached serial callers of parallel kernels

_FM = {"reassoc", "contract", "nsz"}  # lets reductions vectorize; no change to exp/tanh/nan
# Any: numba types njit(**options) and overload(jit_options=) with different TypedDicts
# float32 rows (uint16: f16 bits; int16: bf16 bits, the dtype telling the kernels which); int32
# scratch
Arr = np.ndarray
_JIT: Any = dict(cache=True, fastmath=_FM, error_model="numpy", nogil=True)

ATTN_BLOCK = 128  # positions per block of scores (p: G x 128 floats in L1); a multiple of 8
SLICE_ALIGN = 16  # thread slices start on a multiple of this many positions past ``first``
SPLIT_MIN = 512  # fewest positions worth a thread hand-off (about 25 us of work per head)
# attend_rows hands short rows off from this many (row, KV head) tasks per thread. SmolLM2's
# shapes, 2 threads, one call serial -> handed off: 8 rows of 8 / 40 / 100 positions 17.3 ->
# 11.0, 24.5 -> 15.3, 39.5 -> 23.5 us; 4 rows of 8 / 40 9.4 -> 8.0, 13.7 -> 10.0; but 2 rows
# (6 tasks) 5.2 -> 5.7, 8.8 -> 10.3
TASKS_PER_THREAD = 4
_F16_SCALE = np.float32(2.0**112)  # f16 bits << 13 read as f32, times this: the f16 value

_HOST = cpu_features()
F16C = _HOST["f16c"]  # vcvtph2ps: f16 -> f32 in one instruction per eight values
SIMD = _HOST["avx2"] and _HOST["fma"] and F16C  # the IR kernels below (never run without them)
# the IR kernels' lanes: 16 with AVX-512 (32 registers), 8 with AVX2, 0: plain numba loops
LEVEL = 16 if SIMD and _HOST["avx512f"] else 8 if SIMD else 0
LEVELS = tuple(w for w in (16, 8, 0) if w <= LEVEL)  # every level this host runs (tests)
# the kernels below prefetch the key (value) row this many positions ahead of the one they
# read, into L2, so the DRAM stream keeps going while they compute: SmolLM2's 30 layers of
# f16 cache at depth 3,500 read 12.9-13.6 GB/s without, 24-26 with (Zen 4, BENCHMARKS.md)
PREFETCH_AHEAD = 128
# numba's thread count, fixed at import (numba.get_num_threads() in a kernel stops caching;
# a cached kernel keeps the count it was compiled with: it picks the split, never the result)
THREADS = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]  # set at numba import


# ---- 16-bit cache rows (f16: llvm_ir.half_to_float; bf16): widened to float32, and prefill's
# float32 rows narrowed into them
@intrinsic
def _float_to_half(typingctx, x):
    """The f16 bits of float32 x rounded to nearest even, by LLVM's fptrunc (vcvtps2ph under
    F16C; vectorizes). Only where F16C is: without it LLVM would call a runtime helper."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], F16), ir.IntType(16))

    return types.uint16(types.float32), codegen


@njit(**_JIT)
def bf16_round(b: np.uint32) -> np.uint32:
    """The bf16 bits (in the low half) of float32 bits b: round to nearest even, NaN kept
    quiet (as :func:`trueno.floats.f32_to_bf16`)."""
    if (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
        return (b >> np.uint32(16)) | np.uint32(64)
    return (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)


@njit(**_JIT)
def f32_to_bf16_bits(out: Arr, x: Arr) -> None:
    """out[i] = the bfloat16 of float32 x[i] (contiguous; :func:`bf16_round`), as int16
    bits."""
    xb, ob = x.view(np.uint32), out.view(np.uint16)
    for i in range(x.shape[0]):
        ob[i] = np.uint16(bf16_round(xb[i]))


def _narrow(row, x):
    """row[:] = float32 x in the cache row's 16-bit format (f16 as uint16, bf16 as int16)."""


@overload(_narrow, jit_options=_JIT)
def _narrow_impl(row, x):
    if row.dtype == types.int16:
        return lambda row, x: f32_to_bf16_bits(row, x)

    def to_half(row, x):
        for i in range(x.shape[0]):
            row[i] = _float_to_half(x[i])  # type: ignore[call-arg]  # an intrinsic

    return to_half


@njit(**_JIT)
def narrow_rows(dst: Arr, start: int, src: Arr) -> None:
    """dst[h, start + t] = row t of src's head h as f16 bits (round to nearest even, as numpy's
    astype) or, for an int16 dst, bf16 bits, for src (T, n_kv * head_dim) float32 with
    C-contiguous rows and dst (n_kv, ctx, head_dim): a prefill chunk's keys or values into a
    16-bit cache. f16 needs F16C."""
    n_kv, _, hd = dst.shape
    for t in range(src.shape[0]):
        for h in range(n_kv):
            _narrow(dst[h, start + t], src[t][h * hd : (h + 1) * hd])


@njit(**_JIT)
def _widen_f16(out, src):
    """out[i] = the f16 value of bits src[i] (1-D, contiguous)."""
    if F16C:
        for i in range(src.shape[0]):
            out[i] = half_to_float(src[i])  # type: ignore[call-arg]  # an intrinsic
    else:  # exact for every finite half: bits into f32 position, rebias by a multiply
        bits = out.view(np.uint32)
        for i in range(src.shape[0]):
            h = np.uint32(src[i])
            bits[i] = ((h & np.uint32(0x8000)) << np.uint32(16)) | (
                (h & np.uint32(0x7FFF)) << np.uint32(13)
            )
        for i in range(src.shape[0]):
            out[i] *= _F16_SCALE


def _widen_rows(cache, j0, n, buf):
    """Rows j0..j0+n of a (ctx, head_dim) cache head as float32 (a view, or widened into buf)."""


@overload(_widen_rows, jit_options=_JIT)
def _widen_rows_impl(cache, j0, n, buf):
    if cache.dtype == types.float32:
        return lambda cache, j0, n, buf: cache[j0 : j0 + n]
    if cache.dtype == types.int16:

        def widen_bf16(cache, j0, n, buf):  # bf16: the top half of an f32's bits
            hd = cache.shape[1]
            src = cache[j0 : j0 + n].reshape(n * hd).view(np.uint16)
            bits = buf[:n].reshape(n * hd).view(np.uint32)
            for i in range(n * hd):
                bits[i] = np.uint32(src[i]) << np.uint32(16)
            return buf[:n]

        return widen_bf16

    def widen(cache, j0, n, buf):  # f16 as uint16 bits
        hd = cache.shape[1]
        _widen_f16(buf[:n].reshape(n * hd), cache[j0 : j0 + n].reshape(n * hd))
        return buf[:n]

    return widen


@njit(**_JIT)
def widen_span(heads: Arr, lo: int, hi: int, out: Arr) -> None:
    """out[h] = rows lo..hi-1 of heads[h] as float32 (:func:`_widen_rows` per head): heads
    (n_kv, ctx, head_dim) f16 or bf16 bits, C-contiguous; out (n_kv, hi - lo, head_dim) float32."""
    for h in range(heads.shape[0]):
        _widen_rows(heads[h], lo, hi - lo, out[h])


# ---- the two vector kernels (LLVM IR) -------------------------------------------------------
# Generic LLVM vectors only (no x86 intrinsics): on a host without AVX-512 a 16-lane body is
# legalized into 8-lane halves, so no level emits an instruction its host lacks; the level
# picks the lane count and how many accumulators the register file holds.
_REGS = {16: 24, 8: 12}  # accumulators kept in registers: 32 zmm / 16 ymm, less q, k, temps
_TILE_BYTES = 16384  # value rows per tile when the output takes several register stripes
# query heads with their own unrolled body; a bigger GQA group runs in chunks of this many,
# each chunk reading the block's rows again from L1. Bodies up to 8 heads compiled the decode
# chain in 62 s a cache dtype against 29 s, and read G = 6, 7, 8 caches no faster (hd 128)
_GMAX = 4


def _vf32(lanes):
    return ir.VectorType(F32, lanes)


def cache_format(dtype: types.Type) -> str:
    """The element format of a cache array of numba dtype ``dtype``: "f32", "f16" (uint16
    bits) or "bf16" (int16 bits)."""
    if dtype == types.uint16:
        return "f16"
    return "bf16" if dtype == types.int16 else "f32"


def _row_vec(builder, base, offset, lanes, fmt):
    """``lanes`` cache values at byte ``offset`` as <lanes x float>: f16 bits by vcvtph2ps,
    bf16 bits moved into the top half of each float."""
    if fmt == "f32":
        return load(builder, base, offset, _vf32(lanes))
    bits = load(builder, base, offset, ir.VectorType(ir.IntType(16), lanes))
    if fmt == "bf16":
        wide = builder.zext(bits, ir.VectorType(I32, lanes))
        wide = builder.shl(wide, ir.Constant(ir.VectorType(I32, lanes), [16] * lanes))
        return builder.bitcast(wide, _vf32(lanes))
    return builder.fpext(builder.bitcast(bits, ir.VectorType(F16, lanes)), _vf32(lanes))


def _fma(builder, a, b, c):
    return llvm(builder, f"llvm.fma.v{a.type.count}f32", a.type, a, b, c)


def _pow2_at_most(x, cap):
    p = 1
    while p * 2 <= min(x, cap):
        p *= 2
    return p


def _hadd(builder, x, y):
    """vhaddps: [x0+x1, x2+x3, y0+y1, y2+y3, x4+x5, x6+x7, y4+y5, y6+y7]."""
    even = ir.Constant(ir.VectorType(I32, 8), [0, 2, 8, 10, 4, 6, 12, 14])
    odd = ir.Constant(ir.VectorType(I32, 8), [1, 3, 9, 11, 5, 7, 13, 15])
    return builder.fadd(builder.shuffle_vector(x, y, even), builder.shuffle_vector(x, y, odd))


def _join(builder, left, right, level):
    """One node of the 8x8 transpose-add tree: two hadd levels, then the 128-bit halves."""
    if level < 2:
        return _hadd(builder, left, right)
    lo = ir.Constant(ir.VectorType(I32, 8), [0, 1, 2, 3, 8, 9, 10, 11])
    hi = ir.Constant(ir.VectorType(I32, 8), [4, 5, 6, 7, 12, 13, 14, 15])
    return builder.fadd(
        builder.shuffle_vector(left, right, lo), builder.shuffle_vector(left, right, hi)
    )


def _push(builder, stack, node):
    """Add the next row's <8 x float> partial sums to the tree (a binary counter): after the
    eighth row the stack holds [sum(row 0), ..., sum(row 7)]."""
    level = 0
    while stack and stack[-1][0] == level:
        node = _join(builder, stack.pop()[1], node, level)
        level += 1
    stack.append((level, node))


def _fold8(builder, v):
    """<16 x float> -> <8 x float> of the two halves' sum (8 lanes stay as they are)."""
    if v.type.count == 8:
        return v
    lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, 8), list(range(8))))
    hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, 8), list(range(8, 16))))
    return builder.fadd(lo, hi)


def _row_bytes(context, builder, arytype, value):
    ary = context.make_array(arytype)(context, builder, value)
    return builder.extract_value(ary.strides, 0)


def _rows(context, builder, arytype, value):
    """The first dimension of an array argument."""
    return builder.extract_value(context.make_array(arytype)(context, builder, value).shape, 0)


def _operands(context, builder, signature, args):
    """The two vector kernels' arguments (three 2-D arrays, a count): their data pointers,
    their row strides in bytes, the count, and the format of the third (the cache rows):
    :func:`cache_format`."""
    arrays = tuple(zip(signature.args[:3], args[:3], strict=True))
    ptrs = tuple(data(context, builder, ty, val) for ty, val in arrays)
    rows = tuple(_row_bytes(context, builder, ty, val) for ty, val in arrays)
    return ptrs, rows, args[3], cache_format(signature.args[2].dtype)


def _prefetch_rows(builder, base, row, r0, r1):
    """Prefetch rows r0..r1-1 (none when r1 <= r0) of ``row`` bytes each at i8* ``base``
    into L2, a 64-byte line at a time (the L1 stays for the rows in use)."""
    start, stop = builder.mul(r0, row), builder.mul(r1, row)
    with cgutils.for_range_slice(builder, start, stop, i64(64)) as (off, _):
        prefetch(builder, builder.gep(base, [off]), 2)


def _ahead(builder, r0, r1, stop):
    """Rows r0..r1-1 moved PREFETCH_AHEAD on and clipped at ``stop``: the rows to prefetch."""
    a0, a1 = (builder.add(r, i64(PREFETCH_AHEAD)) for r in (r0, r1))
    return a0, builder.select(builder.icmp_signed("<", a1, stop), a1, stop)


def _by_heads(builder, heads, emit):
    """emit(h0, c) for the head chunks h0 = 0, 4, ... of ``heads``, c = min(4, heads - h0) a
    Python int: one body per count, picked by a switch, so each keeps c accumulator sets."""
    with cgutils.for_range_slice(builder, i64(0), heads, i64(_GMAX)) as (h0, _):
        left = builder.sub(heads, h0)
        c = builder.select(builder.icmp_signed("<", left, i64(_GMAX)), left, i64(_GMAX))
        end = builder.append_basic_block("heads.end")
        switch = builder.switch(c, end)
        for count in range(1, _GMAX + 1):
            body = builder.append_basic_block(f"heads.{count}")
            switch.add_case(i64(count), body)
            builder.position_at_end(body)
            emit(h0, count)
            builder.branch(end)
        builder.position_at_end(end)


def _scores_kernel(lanes):
    """s[g, t] = q[g] . k[t] for g < G, t < n (k: n rows of f32, f16 or bf16 bits, head_dim a
    multiple of ``lanes``): each key chunk is loaded (and widened) once for up to 4 heads; eight
    rows' G dot vectors are summed by one 8x8 transpose-add per head, stored as eight scores
    (s rows: a multiple of 8 long; the last group's rows past n repeat row n - 1). Rows of k
    up to ``stop`` (>= n) exist: each group prefetches the rows PREFETCH_AHEAD on."""

    @intrinsic
    def scores(typingctx, s, q, k, n, stop):
        def codegen(context, builder, signature, args):
            (sp, qp, kp), (s_row, q_row, k_row), n, fmt = _operands(context, builder,
                                                                     signature, args)  # fmt: skip
            es = 4 if fmt == "f32" else 2
            heads = _rows(context, builder, signature.args[1], args[1])
            chunks = builder.udiv(q_row, i64(4 * lanes))
            zero = ir.Constant(_vf32(lanes), None)
            last = builder.sub(n, i64(1))
            groups = builder.udiv(builder.add(n, i64(7)), i64(8))

            def emit(h0, c):
                per = _pow2_at_most(_REGS[lanes] // c, 8)  # rows whose sums share a pass
                q_base = [builder.mul(builder.add(h0, i64(g)), q_row) for g in range(c)]
                s_base = [builder.mul(builder.add(h0, i64(g)), s_row) for g in range(c)]
                with cgutils.for_range(builder, groups) as grp:
                    row0 = builder.mul(grp.index, i64(8))
                    offs = []
                    for r in range(8):
                        t = builder.add(row0, i64(r))
                        t = builder.select(builder.icmp_signed("<", t, n), t, last)
                        offs.append(builder.mul(t, k_row))
                    ahead = _ahead(builder, row0, builder.add(row0, i64(8)), args[4])
                    _prefetch_rows(builder, kp, k_row, *ahead)
                    stacks: list[list[Any]] = [[] for _ in range(c)]
                    for sub in range(0, 8, per):
                        acc = [[Acc(builder, zero) for _ in range(c)] for _ in range(per)]
                        with cgutils.for_range(builder, chunks) as ch:
                            qo = builder.mul(ch.index, i64(4 * lanes))
                            ko = builder.mul(ch.index, i64(es * lanes))
                            qv = [load(builder, qp, builder.add(b, qo), _vf32(lanes))
                                  for b in q_base]  # fmt: skip
                            for r in range(per):
                                kv = _row_vec(builder, kp, builder.add(offs[sub + r], ko),
                                              lanes, fmt)  # fmt: skip
                                for g in range(c):
                                    acc[r][g].set(_fma(builder, qv[g], kv, acc[r][g].get()))
                        for r in range(per):
                            for g in range(c):
                                _push(builder, stacks[g], _fold8(builder, acc[r][g].get()))
                    for g in range(c):
                        at = builder.add(s_base[g], builder.mul(row0, i64(4)))
                        ptr = builder.bitcast(builder.gep(sp, [at]), V8F32.as_pointer())
                        builder.store(stacks[g][0][1], ptr, align=1)

            _by_heads(builder, heads, emit)
            return context.get_dummy_value()

        return types.void(s, q, k, n, stop), codegen

    return scores


def _accumulate_kernel(lanes):
    """acc[g] += sum over t < n of p[g, t] * v[t] for g < G (acc (G, head_dim) float32, v: n
    rows of f32, f16 or bf16 bits, head_dim a multiple of ``lanes``): stripes of the G output rows
    stay in registers while the value rows stream past, each value chunk loaded (and widened)
    once for up to 4 heads. Rows of v up to ``stop`` (>= n) exist: the first stripe prefetches
    the row PREFETCH_AHEAD on from each row it reads."""

    @intrinsic
    def accumulate(typingctx, acc, p, v, n, stop):
        def codegen(context, builder, signature, args):
            (ap, pp, vp), (a_row, p_row, v_row), n, fmt = _operands(context, builder,
                                                                     signature, args)  # fmt: skip
            es = 4 if fmt == "f32" else 2
            heads = _rows(context, builder, signature.args[0], args[0])
            vecs = builder.udiv(a_row, i64(4 * lanes))

            def emit(h0, c):
                a_base = [builder.mul(builder.add(h0, i64(g)), a_row) for g in range(c)]
                p_base = [builder.mul(builder.add(h0, i64(g)), p_row) for g in range(c)]

                def stripe(first, width):  # output vectors first..first+width-1 of each head
                    ao = [builder.mul(builder.add(first, i64(w)), i64(4 * lanes))
                          for w in range(width)]  # fmt: skip
                    vo = [builder.mul(builder.add(first, i64(w)), i64(es * lanes))
                          for w in range(width)]  # fmt: skip
                    regs = [[Acc(builder, load(builder, ap, builder.add(a_base[g], o),
                                               _vf32(lanes))) for o in ao]
                            for g in range(c)]  # fmt: skip
                    lead = builder.icmp_unsigned("==", first, i64(0))  # once per row
                    with cgutils.for_range_slice(builder, t0, t1, i64(1)) as (t, _):
                        with builder.if_then(lead):
                            ahead = _ahead(builder, t, builder.add(t, i64(1)), args[4])
                            _prefetch_rows(builder, vp, v_row, *ahead)
                        pt = builder.mul(t, i64(4))
                        e = [splat(builder, load(builder, pp, builder.add(b, pt), F32), lanes)
                             for b in p_base]  # fmt: skip
                        base = builder.mul(t, v_row)
                        for w in range(width):
                            x = _row_vec(builder, vp, builder.add(base, vo[w]), lanes, fmt)
                            for g in range(c):
                                regs[g][w].set(_fma(builder, e[g], x, regs[g][w].get()))
                    for g in range(c):
                        for o, r in zip(ao, regs[g], strict=True):
                            at = builder.gep(ap, [builder.add(a_base[g], o)])
                            builder.store(r.get(), builder.bitcast(at, _vf32(lanes).as_pointer()),
                                          align=1)  # fmt: skip

                width = _pow2_at_most(_REGS[lanes] // c, 16)
                wide = builder.udiv(vecs, i64(width))
                done = builder.mul(wide, i64(width))
                rest = builder.sub(vecs, done)
                # one stripe: all rows at once; several: tiles of ~16 KB of rows, so the rows
                # come from memory once, in order, and the later stripes find them in L1
                one = builder.icmp_unsigned("<=", vecs, i64(width))
                tile = builder.udiv(i64(_TILE_BYTES), v_row)
                tile = builder.select(builder.icmp_signed("<", tile, i64(8)), i64(8), tile)
                tile = builder.select(one, n, tile)
                tile = builder.select(builder.icmp_signed("<", tile, i64(1)), i64(1), tile)
                with cgutils.for_range_slice(builder, i64(0), n, tile) as (t0, _):
                    t1 = builder.add(t0, tile)
                    t1 = builder.select(builder.icmp_signed("<", t1, n), t1, n)
                    with cgutils.for_range(builder, wide) as w:
                        stripe(builder.mul(w.index, i64(width)), width)
                    part = width // 2
                    while part:  # the rest (< width vectors) as stripes of 4, 2, 1 ... by bits
                        first = builder.add(done, builder.and_(rest, i64(-2 * part)))
                        bit = builder.icmp_unsigned("!=", builder.and_(rest, i64(part)), i64(0))
                        with builder.if_then(bit):
                            stripe(first, part)
                        part //= 2

            _by_heads(builder, heads, emit)
            return context.get_dummy_value()

        return types.void(acc, p, v, n, stop), codegen

    return accumulate


_scores8, _scores16 = _scores_kernel(8), _scores_kernel(16)
_accumulate8, _accumulate16 = _accumulate_kernel(8), _accumulate_kernel(16)


# ---- softmax pieces ---------------------------------------------------------------------------
@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose bits are the int32 ``bits`` (a bitcast: vectorizes, unlike a view)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], F32)

    return types.float32(types.int32), codegen


@intrinsic
def fmaximum(typingctx: Any, a: Any, b: Any) -> Any:
    """max(a, b) of two float32 as LLVM's llvm.maximum (NaN if either is NaN): a max
    reduction over it vectorizes, unlike one over max() or a compare-and-select."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(F32, [F32, F32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.maximum.f32")
        return builder.call(fn, args)

    return types.float32(types.float32, types.float32), codegen


@njit(inline="always", **_JIT)
def expf(x: np.float32) -> np.float32:
    """exp(x) for x <= 0 (Cephes' expf: 2^k times a degree-7 polynomial, a couple of ulp;
    below -87, exp(-87)): unlike np.exp, loops over it vectorize, as it is selects and a
    bitcast for 2^k (no min/max calls, no libm call)."""
    x = x if x > np.float32(-87.0) else np.float32(-87.0)
    k = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
    r = x - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
    y = np.float32(1.9875691500e-4)
    y = y * r + np.float32(1.3981999507e-3)
    y = y * r + np.float32(8.3334519073e-3)
    y = y * r + np.float32(4.1665795894e-2)
    y = y * r + np.float32(1.6666665459e-1)
    y = y * r + np.float32(5.0000001201e-1)
    bits = (np.int32(k) + np.int32(127)) << np.int32(23)
    two_k = _f32_from_bits(bits)  # type: ignore[call-arg, var-annotated]  # an intrinsic
    return (y * r * r + r + np.float32(1.0)) * two_k


@njit(**_JIT)
def exp_shifted(p: Arr, n: int, m: float) -> None:
    """p[t] = exp(p[t] - m) for t < n, all p[t] <= m (:func:`expf`; one loop, no scratch
    array, which would stop LLVM's vectorizer)."""
    for t in range(n):
        p[t] = expf(p[t] - m)


@njit(**_JIT)
def fast_tanh(x: np.float32) -> np.float32:
    """tanh as Eigen's rational approximation (a few ulp in float32); unlike np.tanh it has
    no libm call, so loops over it vectorize."""
    c = np.float32(7.90531110763549805)
    x = max(min(x, c), -c)
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return x * p / q


@njit(**_JIT)
def softcap_scores(p: Arr, n: int, mx: np.float32, cap: float) -> np.float32:
    """p[t] = cap * tanh(p[t] / cap) for t < n (gemma2's attention softcap); the new max of
    ``mx``, the old one (tanh is monotonic)."""
    inv = np.float32(1.0) / np.float32(cap)
    for t in range(n):
        p[t] = np.float32(cap) * fast_tanh(p[t] * inv)
    return np.float32(cap) * fast_tanh(mx * inv)


@njit(**_JIT)
def window_start(pos: int, window: int) -> int:
    """First key position a query at ``pos`` sees (window > 0: keys with pos - j < window)."""
    if window > 0 and pos - window + 1 > 0:
        return pos - window + 1
    return 0


# ---- attention ----------------------------------------------------------------------------------
@njit(**_JIT)
def vector_width(level: int, hd: int) -> int:
    """Lanes of the IR kernels a call runs at ``level`` (16, 8 or 0: plain loops): the widest
    the level allows that divides ``head_dim``."""
    if level >= 16 and hd % 16 == 0:
        return 16
    if level >= 8 and hd % 8 == 0:
        return 8
    return 0


@njit(**_JIT)
def attend_span(acc: Arr, m: Arr, el: Arr, q: Arr, k_head: Arr, v_head: Arr, first: int,
                end: int, scale: float, kbuf: Arr, vbuf: Arr, p: Arr, softcap: float = 0.0,
                level: int = LEVEL) -> None:  # fmt: skip
    """Online-softmax attention of the G query heads q (G, head_dim) of one GQA group over keys
    first..end-1 of one KV head (ctx, head_dim), f32, f16 or bf16 bits: every key and value
    row is read from memory once, for all G heads, a block of p.shape[1] positions at a time
    (p: (G, block) scratch, block a multiple of 8). Running state per query head: max ``m`` (G,),
    sum ``el`` (G,), unnormalised output ``acc`` (G, head_dim); the caller divides by ``el``
    (or merges spans first). ``softcap`` > 0 caps each scaled score as
    ``softcap * tanh(score / softcap)`` (gemma2). ``level``: the IR kernels' lanes (16, 8; 0:
    plain loops, with 16-bit rows widened into kbuf, vbuf (block, head_dim) first)."""
    G, hd = q.shape
    block = p.shape[1]
    lanes = vector_width(level, hd)
    for j0 in range(first, end, block):
        n = min(block, end - j0)
        k_rows = k_head[j0 : j0 + n]
        if lanes == 16:
            _scores16(p, q, k_rows, n, end - j0)
        elif lanes == 8:
            _scores8(p, q, k_rows, n, end - j0)
        else:
            kb = _widen_rows(k_head, j0, n, kbuf)
            for g in range(G):
                qg, pg = q[g], p[g]
                for t in range(n):
                    kt = kb[t]
                    s = np.float32(0.0)
                    for i in range(hd):
                        s += qg[i] * kt[i]
                    pg[t] = s
        for g in range(G):
            pg = p[g]
            mx = np.float32(-np.inf)
            for t in range(n):
                st = pg[t] * np.float32(scale)
                pg[t] = st
                mx = fmaximum(mx, st)  # type: ignore[call-arg]  # an intrinsic
            if softcap > 0:
                mx = softcap_scores(pg, n, mx, softcap)
            m_new = max(m[g], mx)
            corr = np.exp(m[g] - m_new)
            ag = acc[g]
            for i in range(hd):
                ag[i] *= corr
            exp_shifted(pg, n, m_new)
            total = el[g] * corr
            for t in range(n):
                total += pg[t]
            el[g] = total
            m[g] = m_new
        v_rows = v_head[j0 : j0 + n]
        if lanes == 16:
            _accumulate16(acc, p, v_rows, n, end - j0)
        elif lanes == 8:
            _accumulate8(acc, p, v_rows, n, end - j0)
        else:
            vb = _widen_rows(v_head, j0, n, vbuf)
            for g in range(G):
                pg, ag = p[g], acc[g]
                for t in range(n):
                    e, vt = pg[t], vb[t]
                    for i in range(hd):
                        ag[i] += e * vt[i]


@njit(**_JIT)
def _attend_task(acc, m, el, q, k_head, v_head, first, end, scale, softcap, level):
    """One (KV head, slice of positions) task from a fresh running state, own scratch."""
    G, hd = q.shape
    rows = ATTN_BLOCK if vector_width(level, hd) == 0 else 1  # the IR kernels read the cache
    kbuf = np.empty((rows, hd), np.float32)
    vbuf = np.empty((rows, hd), np.float32)
    p = np.empty((G, ATTN_BLOCK), np.float32)
    acc[:] = 0.0
    m[:] = -np.inf
    el[:] = 0.0
    attend_span(acc, m, el, q, k_head, v_head, first, end, scale, kbuf, vbuf, p, softcap, level)


@njit(**_JIT)
def split_positions(n: int, n_kv: int, threads: int) -> int:
    """Slices each KV head's n positions are cut into: the fewest that make the task count
    (n_kv * slices) a multiple of the thread count, so every thread gets the same work (3 KV
    heads on 2 threads: 2 slices, 3 tasks each), but no slice under SPLIT_MIN positions."""
    a, b = n_kv, threads
    while b:
        a, b = b, a % b
    return max(1, min(threads // a, n // SPLIT_MIN))


@njit(**_JIT)
def slice_step(n: int, parts: int) -> int:
    """Positions per slice when n positions are cut into ``parts`` slices: n / parts rounded
    up to a multiple of SLICE_ALIGN (the last slice takes what is left)."""
    step = -(-n // parts)
    return -(-step // SLICE_ALIGN) * SLICE_ALIGN


@njit(**_JIT)
def _merge(out, accs, ms, els, groups, parts):
    """out[kv*G + g] = the softmax-weighted sum over all slices of the running states."""
    hd = out.shape[1]
    n_kv = accs.shape[0] // parts
    for kv in range(n_kv):
        for g in range(groups):
            mx = np.float32(-np.inf)
            for s in range(kv * parts, (kv + 1) * parts):
                mx = max(mx, ms[s, g])
            o = out[kv * groups + g]
            o[:] = 0.0
            total = np.float32(0.0)
            for s in range(kv * parts, (kv + 1) * parts):
                w = np.exp(ms[s, g] - mx) if els[s, g] > 0 else np.float32(0.0)
                total += w * els[s, g]
                a = accs[s, g]
                for i in range(hd):
                    o[i] += w * a[i]
            inv = np.float32(1.0) / total
            for i in range(hd):
                o[i] *= inv


@njit(cache=True, fastmath=_FM, error_model="numpy", nogil=True, parallel=True)
def _attend_parallel(accs, ms, els, q, k_cache, v_cache, first, end, scale, groups, parts,
                     softcap, level):  # fmt: skip
    n_tasks = accs.shape[0]
    step = slice_step(end - first, parts)
    for task in prange(n_tasks):
        kv, s = task // parts, task % parts
        lo = first + s * step
        hi = min(end, lo + step)
        h0 = kv * groups
        _attend_task(accs[task], ms[task], els[task], q[h0 : h0 + groups], k_cache[kv],
                     v_cache[kv], lo, hi, scale, softcap, level)  # fmt: skip


@njit(**_JIT)
def attend_serial(out: Arr, q: Arr, k_cache: Arr, v_cache: Arr, first: int, end: int,
                  scale: float, groups: int, softcap: float,
                  level: int = LEVEL) -> None:  # fmt: skip
    """:func:`attend_gqa` on the calling thread alone."""
    lv = np.int64(level)  # not a literal (an omitted default): one compile for every caller
    hd = q.shape[1]
    m = np.empty(groups, np.float32)
    el = np.empty(groups, np.float32)
    for kv in range(k_cache.shape[0]):
        h0 = kv * groups
        acc = out[h0 : h0 + groups]
        _attend_task(acc, m, el, q[h0 : h0 + groups], k_cache[kv], v_cache[kv], first, end,
                     scale, softcap, lv)  # fmt: skip
        for g in range(groups):
            inv = np.float32(1.0) / el[g]
            for i in range(hd):
                acc[g, i] *= inv


@njit(**_JIT)
def attend_threaded(out: Arr, q: Arr, k_cache: Arr, v_cache: Arr, first: int, end: int,
                    scale: float, groups: int, parts: int, softcap: float,
                    level: int = LEVEL) -> None:  # fmt: skip
    """:func:`attend_gqa` as n_kv * ``parts`` tasks over numba's threads: each KV head's
    positions cut into ``parts`` slices, each slice's running state merged at the end."""
    lv = np.int64(level)  # not a literal (an omitted default): one compile for every caller
    n_kv, _, hd = k_cache.shape
    accs = np.empty((n_kv * parts, groups, hd), np.float32)
    ms = np.empty((n_kv * parts, groups), np.float32)
    els = np.empty((n_kv * parts, groups), np.float32)
    _attend_parallel(accs, ms, els, q, k_cache, v_cache, first, end, scale, groups, parts,
                     softcap, lv)  # fmt: skip
    _merge(out, accs, ms, els, groups, parts)


@njit(**_JIT)
def attend_gqa(out: Arr, q: Arr, k_cache: Arr, v_cache: Arr, first: int, end: int,
               scale: float, groups: int, softcap: float = 0.0,
               level: int = LEVEL) -> None:  # fmt: skip
    """Attention of one query token (q, out: (n_heads, head_dim)) over cache positions
    first..end-1 of k_cache, v_cache (n_kv_heads, ctx, head_dim; float32, or uint16 holding
    f16 bits, or int16 holding bf16 bits): per KV head one online-softmax pass serving its
    ``groups`` query heads, the (KV head, slice of positions) tasks spread over numba's
    threads when there is enough;
    ``softcap`` and ``level`` as in :func:`attend_span` (the default: the host's widest).

    ``level`` is passed on as an int64 whatever its type here: an omitted default or a global
    constant is typed as a literal, and each literal would compile the kernels below once
    more (about 40 s for each cache dtype)."""
    lv = np.int64(level)
    n_kv = k_cache.shape[0]
    n = end - first
    if THREADS == 1 or n * n_kv < SPLIT_MIN:  # short: no thread hand-off
        attend_serial(out, q, k_cache, v_cache, first, end, scale, groups, softcap, lv)
    else:
        parts = split_positions(n, n_kv, np.int64(THREADS))
        attend_threaded(out, q, k_cache, v_cache, first, end, scale, groups, parts, softcap,
                        lv)  # fmt: skip


@njit(**_JIT)
def attend_one(out: Arr, q: Arr, k_cache: Arr, v_cache: Arr, pos: int, window: int,
               scale: float, groups: int, scores: Arr, softcap: float = 0.0) -> None:  # fmt: skip
    """Attention of one query token at ``pos`` over the cache (decode): :func:`attend_gqa`
    over the keys the window keeps. The signature of the GPU primitive of the same name
    (``scores``: its (ctx,) scratch, unused here), for :class:`~trueno.llm.runtime.
    ComposedKernels`."""
    attend_gqa(out, q, k_cache, v_cache, window_start(pos, window), pos + 1, scale, groups,
               softcap, np.int64(LEVEL))  # fmt: skip


# ---- decode attention of a batch: one call for every sequence's query ------------------------
@njit(**_JIT)
def _row_task(accs, ms, els, q, k_caches, v_caches, task_row, task_kv, task_lo, task_hi, slots,
              groups, scale, softcap, level, t):  # fmt: skip
    """Task ``t`` of :func:`attend_rows`: one (row, KV head, slice of positions)."""
    b, kv = task_row[t], task_kv[t]
    h0 = kv * groups
    _attend_task(accs[t], ms[t], els[t], q[b, h0 : h0 + groups], k_caches[slots[b], kv],
                 v_caches[slots[b], kv], task_lo[t], task_hi[t], scale, softcap,
                 level)  # fmt: skip


@njit(cache=True, fastmath=_FM, error_model="numpy", nogil=True, parallel=True)
def _rows_parallel(accs, ms, els, q, k_caches, v_caches, task_row, task_kv, task_lo, task_hi,
                   slots, groups, scale, softcap, level):  # fmt: skip
    for t in prange(accs.shape[0]):
        _row_task(accs, ms, els, q, k_caches, v_caches, task_row, task_kv, task_lo, task_hi,
                  slots, groups, scale, softcap, level, t)  # fmt: skip


@njit(**_JIT)
def attend_rows(out: Arr, q: Arr, k_caches: Arr, v_caches: Arr, slots: Arr, firsts: Arr,
                ends: Arr, scale: float, groups: int, softcap: float = 0.0,
                level: int = LEVEL) -> None:  # fmt: skip
    """:func:`attend_gqa` of B query tokens, each over its own sequence's cache, in one call:
    out, q (B, n_heads, head_dim); k_caches, v_caches (n_slots, n_kv_heads, ctx, head_dim);
    row b attends positions firsts[b]..ends[b]-1 of slot slots[b].

    Each row is cut into the (KV head, slice of positions) tasks attend_gqa would cut it into
    and merged as it would merge them, so every row's output equals attend_gqa's of that row
    bit for bit; the tasks of all rows share one hand-off to numba's threads when any row is
    long enough for attend_gqa to hand its own off, or when there are TASKS_PER_THREAD tasks
    per thread however short (one hand-off for the call, never more than a call per row)."""
    lv = np.int64(level)  # as attend_gqa: one compile for every caller
    B = q.shape[0]
    n_kv, hd = k_caches.shape[1], k_caches.shape[3]
    parts = np.empty(B, np.int64)
    start = np.zeros(B + 1, np.int64)
    threaded = False
    for b in range(B):
        n = ends[b] - firsts[b]
        serial = THREADS == 1 or n * n_kv < SPLIT_MIN
        threaded = threaded or not serial
        parts[b] = 1 if serial else split_positions(n, n_kv, THREADS)
        start[b + 1] = start[b] + n_kv * parts[b]
    n_tasks = start[B]
    task_row = np.empty(n_tasks, np.int64)
    task_kv = np.empty(n_tasks, np.int64)
    task_lo = np.empty(n_tasks, np.int64)
    task_hi = np.empty(n_tasks, np.int64)
    for b in range(B):  # _attend_parallel's slices (one slice: attend_serial's whole span)
        first, end, p = firsts[b], ends[b], parts[b]
        step = slice_step(end - first, p)
        for task in range(n_kv * p):
            t = start[b] + task
            kv, s = task // p, task % p
            task_row[t], task_kv[t] = b, kv
            task_lo[t] = first + s * step
            task_hi[t] = min(end, first + s * step + step)
    accs = np.empty((n_tasks, groups, hd), np.float32)
    ms = np.empty((n_tasks, groups), np.float32)
    els = np.empty((n_tasks, groups), np.float32)
    if THREADS == 1 or not (threaded or n_tasks >= TASKS_PER_THREAD * THREADS):
        for t in range(n_tasks):  # a few short rows: no hand-off
            _row_task(accs, ms, els, q, k_caches, v_caches, task_row, task_kv, task_lo,
                      task_hi, slots, groups, scale, softcap, lv, t)  # fmt: skip
    else:
        _rows_parallel(accs, ms, els, q, k_caches, v_caches, task_row, task_kv, task_lo,
                       task_hi, slots, groups, scale, softcap, lv)  # fmt: skip
    for b in range(B):
        lo, hi = start[b], start[b + 1]
        if parts[b] > 1:
            _merge(out[b], accs[lo:hi], ms[lo:hi], els[lo:hi], groups, parts[b])
            continue
        for kv in range(n_kv):  # attend_serial's normalization
            acc, o = accs[lo + kv], out[b, kv * groups : (kv + 1) * groups]
            for g in range(groups):
                inv = np.float32(1.0) / els[lo + kv, g]
                for i in range(hd):
                    o[g, i] = acc[g, i] * inv
