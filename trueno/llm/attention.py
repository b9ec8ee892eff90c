"""Decode attention: one query token over the KV cache, at the cache's bandwidth.

For each KV head, the ``G`` query heads of its GQA group read its keys and values once, a
block of ``ATTN_BLOCK`` positions at a time (f16 blocks widened to f32 in L1 first), with an
online softmax (running max and sum), so scores, softmax and the V sum are one pass:

- scores: eight key rows at a time against the query, eight independent AVX2 accumulators
  summed over ``head_dim`` and reduced together by one 8x8 transpose-add (a handful of
  shuffles per eight positions instead of a horizontal sum per position);
- values: the output row stays in registers (64 floats, eight vectors) while the block's
  value rows stream past;
- work is split over threads as (KV head, slice of positions) tasks, each with its own
  running max / sum / output, merged at the end (the max-rescaled sums of flash-decoding).

The two vector kernels are LLVM IR (llvmlite) used only when the host has AVX2 and FMA and
``head_dim`` is a multiple of 8; otherwise plain numba loops compute the same thing.
This module imports numba; :mod:`trueno.llm.kernels` re-exports its kernels.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from trueno.cpu import cpu_features
from trueno.quant.llvm_ir import F16, F32, I32, V8F32, Acc, data, fma, i64, load, splat

_FM = {"reassoc", "contract", "nsz"}  # lets reductions vectorize; no change to exp/tanh/nan
# Any: numba types njit(**options) and overload(jit_options=) with different TypedDicts
Arr = np.ndarray  # float32 rows (uint16 f16 bits for a half cache); int32 scratch
_JIT: Any = dict(cache=True, fastmath=_FM, error_model="numpy", nogil=True)

ATTN_BLOCK = 32  # positions per block: its K and V rows (widened to f32) stay in L1 for all G heads
SPLIT_MIN = 512  # fewest positions worth a thread hand-off (about 25 us of work per head)
_F16_SCALE = np.float32(2.0**112)  # f16 bits << 13 read as f32, times this: the f16 value

_HOST = cpu_features()
SIMD = _HOST["avx2"] and _HOST["fma"]  # the IR kernels below (never run without them)
F16C = _HOST["f16c"]  # vcvtph2ps: f16 -> f32 in one instruction per eight values
# numba's thread count, fixed at import (numba.get_num_threads() in a kernel stops caching;
# a cached kernel keeps the count it was compiled with: it picks the split, never the result)
THREADS = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]  # set at numba import


# ---- f16 cache rows as float32 --------------------------------------------------------------
@intrinsic
def _half_to_float(typingctx, bits):
    """The f16 value of uint16 bits, by LLVM's fpext (vcvtph2ps under F16C; vectorizes)."""

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], F16), F32)

    return types.float32(types.uint16), codegen


@njit(**_JIT)
def _widen_f16(out, src):
    """out[i] = the f16 value of bits src[i] (1-D, contiguous)."""
    if F16C:
        for i in range(src.shape[0]):
            out[i] = _half_to_float(src[i])  # type: ignore[call-arg]  # an intrinsic
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

    def widen(cache, j0, n, buf):  # f16 as uint16 bits
        hd = cache.shape[1]
        _widen_f16(buf[:n].reshape(n * hd), cache[j0 : j0 + n].reshape(n * hd))
        return buf[:n]

    return widen


# ---- the two vector kernels (LLVM IR) -------------------------------------------------------
def _hadd(builder, x, y):
    """vhaddps: [x0+x1, x2+x3, y0+y1, y2+y3, x4+x5, x6+x7, y4+y5, y6+y7]."""
    even = ir.Constant(ir.VectorType(I32, 8), [0, 2, 8, 10, 4, 6, 12, 14])
    odd = ir.Constant(ir.VectorType(I32, 8), [1, 3, 9, 11, 5, 7, 13, 15])
    return builder.fadd(builder.shuffle_vector(x, y, even), builder.shuffle_vector(x, y, odd))


def _transpose_sum(builder, v):
    """[sum(v[0]), ..., sum(v[7])] of eight <8 x float>: 8x8 transpose-add in 9 shuffles."""
    h0123 = _hadd(builder, _hadd(builder, v[0], v[1]), _hadd(builder, v[2], v[3]))
    h4567 = _hadd(builder, _hadd(builder, v[4], v[5]), _hadd(builder, v[6], v[7]))
    lo = ir.Constant(ir.VectorType(I32, 8), [0, 1, 2, 3, 8, 9, 10, 11])
    hi = ir.Constant(ir.VectorType(I32, 8), [4, 5, 6, 7, 12, 13, 14, 15])
    return builder.fadd(
        builder.shuffle_vector(h0123, h4567, lo), builder.shuffle_vector(h0123, h4567, hi)
    )


def _row_bytes(context, builder, arytype, value):
    ary = context.make_array(arytype)(context, builder, value)
    return builder.extract_value(ary.strides, 0)


@intrinsic
def _scores8(typingctx, s, q, k, groups8):
    """s[t] = q . k[t] for t < 8 * groups8; k (rows, hd) float32 rows, hd % 8 == 0."""

    def codegen(context, builder, signature, args):
        s_ty, q_ty, k_ty, _ = signature.args
        sp = data(context, builder, s_ty, args[0])
        qp = data(context, builder, q_ty, args[1])
        kp = data(context, builder, k_ty, args[2])
        row = _row_bytes(context, builder, k_ty, args[2])
        chunks = builder.udiv(row, i64(32))
        zero = ir.Constant(V8F32, [ir.Constant(F32, 0.0)] * 8)
        with cgutils.for_range(builder, args[3]) as block:
            base = builder.mul(builder.mul(block.index, i64(8)), row)
            rows = [builder.add(base, builder.mul(i64(r), row)) for r in range(8)]
            acc = [Acc(builder, zero) for _ in range(8)]
            with cgutils.for_range(builder, chunks) as chunk:
                off = builder.mul(chunk.index, i64(32))
                qv = load(builder, qp, off, V8F32)
                for r in range(8):
                    kv = load(builder, kp, builder.add(rows[r], off), V8F32)
                    acc[r].set(fma(builder, qv, kv, acc[r].get()))
            out = _transpose_sum(builder, [a.get() for a in acc])
            ptr = builder.gep(sp, [builder.mul(block.index, i64(32))])
            builder.store(out, builder.bitcast(ptr, V8F32.as_pointer()), align=1)
        return context.get_dummy_value()

    return types.void(s, q, k, groups8), codegen


_VECS = 8  # output vectors kept in registers by _accumulate_rows (64 floats)


@intrinsic
def _accumulate_rows(typingctx, acc, p, v, n):
    """acc += sum over t < n of p[t] * v[t]; acc (hd,), v (rows, hd) float32, hd % 8 == 0."""

    def codegen(context, builder, signature, args):
        a_ty, p_ty, v_ty, _ = signature.args
        ap = data(context, builder, a_ty, args[0])
        pp = data(context, builder, p_ty, args[1])
        vp = data(context, builder, v_ty, args[2])
        n = args[3]
        row = _row_bytes(context, builder, v_ty, args[2])
        vecs = builder.udiv(row, i64(32))
        wide = builder.udiv(vecs, i64(_VECS))

        def stripe(first_vec, width):  # output vectors first_vec.. (width of them) in registers
            offs = [builder.mul(builder.add(first_vec, i64(w)), i64(32)) for w in range(width)]
            regs = [Acc(builder, load(builder, ap, o, V8F32)) for o in offs]
            with cgutils.for_range(builder, n) as t:
                e = splat(builder, load(builder, pp, builder.mul(t.index, i64(4)), F32), 8)
                base = builder.mul(t.index, row)
                for o, r in zip(offs, regs, strict=True):
                    x = load(builder, vp, builder.add(base, o), V8F32)
                    r.set(fma(builder, e, x, r.get()))
            for o, r in zip(offs, regs, strict=True):
                ptr = builder.bitcast(builder.gep(ap, [o]), V8F32.as_pointer())
                builder.store(r.get(), ptr, align=1)

        with cgutils.for_range(builder, wide) as w:
            stripe(builder.mul(w.index, i64(_VECS)), _VECS)
        with cgutils.for_range_slice(builder, builder.mul(wide, i64(_VECS)), vecs, i64(1)) as (
            vec,
            _,
        ):
            stripe(vec, 1)
        return context.get_dummy_value()

    return types.void(acc, p, v, n), codegen


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


@njit(**_JIT)
def exp_shifted(p: Arr, n: int, m: float) -> None:
    """p[t] = exp(p[t] - m) for t < n, all p[t] <= m (Cephes' expf: 2^k times a degree-7
    polynomial, a couple of ulp): unlike np.exp it vectorizes, as one loop of selects and a
    bitcast for 2^k (no min/max calls, no scratch array: each would stop LLVM's vectorizer)."""
    for t in range(n):
        x = p[t] - m
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
        p[t] = (y * r * r + r + np.float32(1.0)) * two_k


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


@njit(**_JIT)
def softmax_tile(
    s: Arr, m: Arr, total: Arr, corr: Arr, q0: int, k0: int, T: int, window: int, softcap: float
) -> None:
    """One key tile of prefill's online softmax, in place. Row r of ``s`` (rows, nb) holds the
    scaled scores of the query at position q0 + r % T against keys k0..k0+nb-1; the keys it
    may not see (later than it: causal; ``window`` or more behind it: sliding window) are
    skipped, never read. Per row: ``softcap`` > 0 caps the scores; m[r] becomes the running
    max m_new; s[r] = exp(s[r] - m_new) (0 where masked); corr[r] = exp(m_old - m_new), the
    factor the caller rescales its running output by; total[r] = total[r] * corr[r] + the
    row's sum. Two vectorized passes per row (max; exp and sum) instead of numpy's six."""
    rows, nb = s.shape
    for r in range(rows):
        qp = q0 + r % T
        lo = min(nb, max(0, qp - window + 1 - k0)) if window > 0 else 0
        hi = max(lo, min(nb, qp - k0 + 1))  # visible: keys lo..hi-1 (maybe none)
        row = s[r]
        vis, n = row[lo:hi], hi - lo  # loops from 0 over a view: numba's index wraparound
        if softcap > 0 and n > 0:  # checks on row[lo + j] would stop LLVM's vectorizer
            softcap_scores(vis, n, np.float32(0.0), softcap)
        mx = np.float32(-np.inf)
        for j in range(n):
            mx = fmaximum(mx, vis[j])  # type: ignore[call-arg]  # an intrinsic
        m_old = m[r]
        m_new = mx if mx > m_old else m_old
        row[:lo] = 0.0
        row[hi:] = 0.0
        if m_new == -np.inf:  # nothing visible yet: no mass, nothing to rescale
            corr[r] = 1.0
            continue
        c = np.exp(m_old - m_new)
        exp_shifted(vis, n, m_new)
        t = np.float32(0.0)
        for j in range(n):
            t += vis[j]
        total[r] = total[r] * c + t
        m[r] = m_new
        corr[r] = c


# ---- attention ----------------------------------------------------------------------------------
@njit(**_JIT)
def attend_span(acc: Arr, m: Arr, el: Arr, q: Arr, k_head: Arr, v_head: Arr, first: int,
                end: int, scale: float, kbuf: Arr, vbuf: Arr, p: Arr,
                softcap: float = 0.0) -> None:  # fmt: skip
    """Online-softmax attention of the G query heads q (G, head_dim) of one GQA group over keys
    first..end-1 of one KV head (ctx, head_dim), f32 or f16 bits: every key and value row is
    read from memory once, a block of ``ATTN_BLOCK`` positions at a time, for all G heads.
    Running state per query head: max ``m`` (G,), sum ``el`` (G,), unnormalised output
    ``acc`` (G, head_dim); the caller divides by ``el`` (or merges spans first).
    ``softcap`` > 0 caps each scaled score as ``softcap * tanh(score / softcap)`` (gemma2)."""
    G, hd = q.shape
    simd = SIMD and hd % 8 == 0
    for j0 in range(first, end, ATTN_BLOCK):
        n = min(ATTN_BLOCK, end - j0)
        kb = _widen_rows(k_head, j0, n, kbuf)
        vb = _widen_rows(v_head, j0, n, vbuf)
        n8 = n // 8 if simd else 0
        for g in range(G):
            qg, pg = q[g], p[g]
            if n8 > 0:
                _scores8(pg, qg, kb, n8)  # type: ignore[call-arg]  # an intrinsic
            for t in range(8 * n8, n):
                kt = kb[t]
                s = np.float32(0.0)
                for i in range(hd):
                    s += qg[i] * kt[i]
                pg[t] = s
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
            if simd:
                _accumulate_rows(ag, pg, vb, n)  # type: ignore[call-arg]  # an intrinsic
            else:
                for t in range(n):
                    e, vt = pg[t], vb[t]
                    for i in range(hd):
                        ag[i] += e * vt[i]
            el[g] = total
            m[g] = m_new


@njit(**_JIT)
def _attend_task(acc, m, el, q, k_head, v_head, first, end, scale, softcap):
    """One (KV head, slice of positions) task from a fresh running state, own scratch."""
    G, hd = q.shape
    kbuf = np.empty((ATTN_BLOCK, hd), np.float32)
    vbuf = np.empty((ATTN_BLOCK, hd), np.float32)
    p = np.empty((G, ATTN_BLOCK), np.float32)
    acc[:] = 0.0
    m[:] = -np.inf
    el[:] = 0.0
    attend_span(acc, m, el, q, k_head, v_head, first, end, scale, kbuf, vbuf, p, softcap)


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
                     softcap):  # fmt: skip
    n_tasks = accs.shape[0]
    step = -(-(end - first) // parts)
    step = -(-step // ATTN_BLOCK) * ATTN_BLOCK
    for task in prange(n_tasks):
        kv, s = task // parts, task % parts
        lo = first + s * step
        hi = min(end, lo + step)
        h0 = kv * groups
        _attend_task(accs[task], ms[task], els[task], q[h0 : h0 + groups], k_cache[kv],
                     v_cache[kv], lo, hi, scale, softcap)  # fmt: skip


@njit(**_JIT)
def attend_serial(out: Arr, q: Arr, k_cache: Arr, v_cache: Arr, first: int, end: int,
                  scale: float, groups: int, softcap: float) -> None:  # fmt: skip
    """:func:`attend_gqa` on the calling thread alone."""
    hd = q.shape[1]
    m = np.empty(groups, np.float32)
    el = np.empty(groups, np.float32)
    for kv in range(k_cache.shape[0]):
        h0 = kv * groups
        acc = out[h0 : h0 + groups]
        _attend_task(acc, m, el, q[h0 : h0 + groups], k_cache[kv], v_cache[kv], first, end,
                     scale, softcap)  # fmt: skip
        for g in range(groups):
            inv = np.float32(1.0) / el[g]
            for i in range(hd):
                acc[g, i] *= inv


@njit(**_JIT)
def attend_threaded(out: Arr, q: Arr, k_cache: Arr, v_cache: Arr, first: int, end: int,
                    scale: float, groups: int, parts: int, softcap: float) -> None:  # fmt: skip
    """:func:`attend_gqa` as n_kv * ``parts`` tasks over numba's threads: each KV head's
    positions cut into ``parts`` slices, each slice's running state merged at the end."""
    n_kv, _, hd = k_cache.shape
    accs = np.empty((n_kv * parts, groups, hd), np.float32)
    ms = np.empty((n_kv * parts, groups), np.float32)
    els = np.empty((n_kv * parts, groups), np.float32)
    _attend_parallel(accs, ms, els, q, k_cache, v_cache, first, end, scale, groups, parts,
                     softcap)  # fmt: skip
    _merge(out, accs, ms, els, groups, parts)


@njit(**_JIT)
def attend_gqa(out: Arr, q: Arr, k_cache: Arr, v_cache: Arr, first: int, end: int,
               scale: float, groups: int, softcap: float = 0.0) -> None:  # fmt: skip
    """Attention of one query token (q, out: (n_heads, head_dim)) over cache positions
    first..end-1 of k_cache, v_cache (n_kv_heads, ctx, head_dim; float32, or uint16 holding
    f16 bits): per KV head one online-softmax pass serving its ``groups`` query heads, the
    (KV head, slice of positions) tasks spread over numba's threads when there is enough;
    ``softcap`` as in :func:`attend_span`."""
    n_kv = k_cache.shape[0]
    n = end - first
    if THREADS == 1 or n * n_kv < SPLIT_MIN:  # short: no thread hand-off
        attend_serial(out, q, k_cache, v_cache, first, end, scale, groups, softcap)
    else:
        parts = split_positions(n, n_kv, THREADS)
        attend_threaded(out, q, k_cache, v_cache, first, end, scale, groups, parts, softcap)


@njit(**_JIT)
def attend_one(out: Arr, q: Arr, k_cache: Arr, v_cache: Arr, pos: int, window: int,
               scale: float, groups: int, scores: Arr, softcap: float = 0.0) -> None:  # fmt: skip
    """Attention of one query token at ``pos`` over the cache (decode): :func:`attend_gqa`
    over the keys the window keeps. The signature of the GPU primitive of the same name
    (``scores``: its (ctx,) scratch, unused here), for :class:`~trueno.llm.runtime.
    ComposedKernels`."""
    attend_gqa(out, q, k_cache, v_cache, window_start(pos, window), pos + 1, scale, groups,
               softcap)  # fmt: skip
