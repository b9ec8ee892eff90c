"""Prefill attention: a chunk of queries over the KV cache in flash-attention tiles.

The work is cut into (KV head, block of ``qb`` queries) tasks. A task's R = qb * G rows are
its queries times the G query heads of the KV head's group (row t * G + g), and they meet
the cached keys a tile of ``block`` positions at a time, with an online softmax::

    ST = K_tile . Q^T                    (keys, R)   the scaled scores, a key per row
    m_new = max(m, max_j ST[j]);  P = exp(ST - m_new);  corr = exp(m - m_new)
    l = l * corr + sum_j P[j];    O = O * corr + P^T . V_tile      (R, head_dim)

Both products are register-blocked LLVM IR kernels of generic vectors (lanes per ISA level as
in :mod:`trueno.llm.attention`): the scores broadcast 8 (4 on AVX2) key values against two
vectors of Q^T per step, the values broadcast 4 rows' weights against up to four vectors of a
value row, so each keeps 16 (8) accumulators in registers through its inner loop. The
softmax runs along the rows of ST, so its max, exp and sums vectorize over the queries.

Keys a query may not see (later than it: causal; ``window`` or more behind it: sliding
window) get weight 0, and tiles no query of a task sees are never read; f16 tiles are widened
by vcvtph2ps once per task and tile. Tasks go over numba's threads, each with its own
scratch, so a query's output never depends on the thread count.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from trueno.backends.numba_cache import drop_stale
from trueno.backends.numba_kernels._math import wide_vectors
from trueno.llm.attention import (
    _FM,
    _JIT,
    LEVEL,
    THREADS,
    Arr,
    _fma,
    _row_bytes,
    _vf32,
    _widen_rows,
    bf16_round,
    expf,
    fast_tanh,
    vector_width,
    window_start,
)
from trueno.quant.kernels import host_lacks, target_has
from trueno.quant.llvm_ir import F32, I32, V16I32, Acc, data, dot_bf16, i64, load, splat

drop_stale(__file__, ("attention.py", "../quant/llvm_ir.py", "../backends/numba_kernels/_math.py"))

# vdpbf16ps for a bf16 cache's products: the host and numba's target must have AVX512-BF16
# (with AVX-512's 16 lanes); elsewhere a bf16 cache is widened to float32 like an f16 one
BF16_CPU_NAMES = frozenset(
    "cooperlake sapphirerapids emeraldrapids graniterapids znver4 znver5".split()
)
BF16_DOT = (
    LEVEL == 16 and not host_lacks(("avx512bf16",)) and target_has(("avx512bf16",), BF16_CPU_NAMES)
)

KEY_BLOCK = 128  # keys per tile (ST: 128 x R floats, with the widened K and V tiles, in L2)
QUERY_BLOCK = 32  # queries per task (R = 32 G rows: a multiple of the row vectors' width)
SERIAL_MAX = 1 << 16  # (query, key) pairs of a chunk below which it runs on the calling thread

# (keys per scores step, Q^T vectors per step, value rows per step, value vectors at most)
_SHAPE = {16: (8, 2, 4, 4), 8: (4, 2, 4, 2)}


def _products(lanes, bf16):
    """The inner products' (multiply-add, scalar operand type, vector operand type): float32
    FMA, or a pair of bf16 a lane (:func:`trueno.quant.llvm_ir.dot_bf16`, 16 lanes only)."""
    if not bf16:
        return (lambda builder, a, b, acc: _fma(builder, a, b, acc)), F32, _vf32(lanes)
    assert lanes == 16, "vdpbf16ps: 16 lanes"
    return (lambda builder, a, b, acc: dot_bf16(builder, acc, a, b)), I32, V16I32


def _vmax(builder, a, b):
    return builder.select(builder.fcmp_ordered(">", a, b), a, b)  # vmaxps


def _scores_kernel(lanes, bf16=False):
    """st[j, r] = sum_d k[j, d] * qt[d, r] for j < n rounded up to the key step (rows of k
    past n repeat row n - 1), r < qt.shape[1] (a multiple of the two vectors' width), and
    mx[r] = the max of mx[r] and st[j, r] over j < n. ``bf16``: k rows of bf16 bits and qt
    (head_dim / 2, R) of uint32 bf16 pairs (dims 2i, 2i + 1), one vdpbf16ps per pair."""
    keys, nv, _, _ = _SHAPE[lanes]
    width = nv * lanes
    vty = _vf32(lanes)
    mac, elem, vin = _products(lanes, bf16)

    @intrinsic
    def scores(typingctx, st, mx, k, qt, n):
        def codegen(context, builder, signature, args):
            tys = signature.args
            sp, mp, kp, qp = (data(context, builder, tys[i], args[i]) for i in range(4))
            s_row, k_row, q_row = (_row_bytes(context, builder, tys[i], args[i]) for i in (0, 2, 3))
            n = args[4]
            hd = context.make_array(tys[3])(context, builder, args[3]).shape
            hd = builder.extract_value(hd, 0)
            cols = builder.udiv(builder.udiv(q_row, i64(4)), i64(width))
            steps = builder.udiv(builder.add(n, i64(keys - 1)), i64(keys))
            last = builder.sub(n, i64(1))
            zero = ir.Constant(vty, None)
            with cgutils.for_range(builder, steps) as js:
                js_rows = [builder.add(builder.mul(js.index, i64(keys)), i64(i))
                           for i in range(keys)]  # fmt: skip
                rows = [builder.mul(builder.select(builder.icmp_signed("<", j, n), j, last),
                                    k_row) for j in js_rows]  # fmt: skip
                with cgutils.for_range(builder, cols) as cs:
                    c0 = builder.mul(cs.index, i64(4 * width))
                    acc = [[Acc(builder, zero) for _ in range(nv)] for _ in range(keys)]
                    with cgutils.for_range(builder, hd) as ds:
                        qo = builder.add(builder.mul(ds.index, q_row), c0)
                        qv = [load(builder, qp, builder.add(qo, i64(4 * lanes * v)), vin)
                              for v in range(nv)]  # fmt: skip
                        d4 = builder.mul(ds.index, i64(4))  # a float, or a bf16 pair
                        for i in range(keys):
                            kv = splat(builder, load(builder, kp, builder.add(rows[i], d4), elem),
                                       lanes)  # fmt: skip
                            for v in range(nv):
                                acc[i][v].set(mac(builder, kv, qv[v], acc[i][v].get()))
                    for v in range(nv):
                        vals = [acc[i][v].get() for i in range(keys)]  # keys: a power of 2
                        while len(vals) > 1:
                            vals = [_vmax(builder, vals[i], vals[i + 1])
                                    for i in range(0, len(vals), 2)]  # fmt: skip
                        mo = builder.add(c0, i64(4 * lanes * v))
                        top = _vmax(builder, load(builder, mp, mo, vty), vals[0])
                        builder.store(top, builder.bitcast(builder.gep(mp, [mo]), vty.as_pointer()),
                                      align=1)  # fmt: skip
                    for i, j in enumerate(js_rows):
                        so = builder.add(builder.mul(j, s_row), c0)
                        for v in range(nv):
                            at = builder.gep(sp, [builder.add(so, i64(4 * lanes * v))])
                            builder.store(acc[i][v].get(), builder.bitcast(at, vty.as_pointer()),
                                          align=1)  # fmt: skip
            return context.get_dummy_value()

        return types.void(st, mx, k, qt, n), codegen

    return scores


def _values_kernel(lanes, bf16=False):
    """o[r, c] += sum_{j < n} p[j, r] * v[j, c] for r < o.shape[0] (a multiple of the row
    step), c < head_dim (a multiple of ``lanes``): stripes of up to four vectors of 4 rows
    stay in registers while the value rows stream past. ``bf16``: p and v of uint32 bf16
    pairs (keys 2j, 2j + 1) and n counts pairs, one vdpbf16ps per pair."""
    _, _, mr, wmax = _SHAPE[lanes]
    mac, elem, vin = _products(lanes, bf16)

    @intrinsic
    def accumulate(typingctx, o, p, v, n):
        def codegen(context, builder, signature, args):
            tys = signature.args
            op_, pp, vp = (data(context, builder, tys[i], args[i]) for i in range(3))
            o_row, p_row, v_row = (_row_bytes(context, builder, tys[i], args[i]) for i in range(3))
            n = args[3]
            shape = context.make_array(tys[0])(context, builder, args[0]).shape
            rows, hd = builder.extract_value(shape, 0), builder.extract_value(shape, 1)
            vecs = builder.udiv(hd, i64(lanes))
            blocks = builder.udiv(rows, i64(mr))

            def stripe(r0, first, w):  # rows r0..r0+mr-1, vectors first..first+w-1
                ro = [builder.mul(builder.add(r0, i64(i)), o_row) for i in range(mr)]
                co = [builder.mul(builder.add(first, i64(x)), i64(4 * lanes)) for x in range(w)]
                acc = [[Acc(builder, load(builder, op_, builder.add(ro[i], co[x]),
                                          _vf32(lanes))) for x in range(w)]
                       for i in range(mr)]  # fmt: skip
                p0 = builder.mul(r0, i64(4))
                with cgutils.for_range(builder, n) as js:
                    po = builder.add(builder.mul(js.index, p_row), p0)
                    vo = builder.mul(js.index, v_row)
                    e = [splat(builder, load(builder, pp, builder.add(po, i64(4 * i)), elem),
                               lanes) for i in range(mr)]  # fmt: skip
                    xs = [load(builder, vp, builder.add(vo, co[x]), vin) for x in range(w)]
                    for i in range(mr):
                        for x in range(w):
                            acc[i][x].set(mac(builder, e[i], xs[x], acc[i][x].get()))
                for i in range(mr):
                    for x in range(w):
                        at = builder.gep(op_, [builder.add(ro[i], co[x])])
                        ptr = builder.bitcast(at, _vf32(lanes).as_pointer())
                        builder.store(acc[i][x].get(), ptr, align=1)

            wide = builder.udiv(vecs, i64(wmax))
            done = builder.mul(wide, i64(wmax))
            rest = builder.sub(vecs, done)
            with cgutils.for_range(builder, blocks) as rb:
                r0 = builder.mul(rb.index, i64(mr))
                with cgutils.for_range(builder, wide) as ws:
                    stripe(r0, builder.mul(ws.index, i64(wmax)), wmax)
                part = wmax // 2
                while part:  # the rest (< wmax vectors) as stripes of 2, 1 by its bits
                    first = builder.add(done, builder.and_(rest, i64(-2 * part)))
                    bit = builder.icmp_unsigned("!=", builder.and_(rest, i64(part)), i64(0))
                    with builder.if_then(bit):
                        stripe(r0, first, part)
                    part //= 2
            return context.get_dummy_value()

        return types.void(o, p, v, n), codegen

    return accumulate


_scores8, _scores16 = _scores_kernel(8), _scores_kernel(16)
_values8, _values16 = _values_kernel(8), _values_kernel(16)
_scores_bf16, _values_bf16 = _scores_kernel(16, bf16=True), _values_kernel(16, bf16=True)


@njit(**_JIT)
def _scores(st, mx, k, qt, n, lanes):
    """ST rows 0..n-1 of one tile and their max per row (see :func:`_scores_kernel`; plain
    loops at lanes 0)."""
    mx[:] = -np.inf
    if lanes == 16:
        _scores16(st, mx, k, qt, n)
    elif lanes == 8:
        _scores8(st, mx, k, qt, n)
    else:
        hd, R = qt.shape
        for j in range(n):
            sj = st[j]
            sj[:] = 0.0
            for d in range(hd):
                kd = k[j, d]
                for r in range(R):
                    sj[r] += kd * qt[d, r]
            for r in range(R):
                mx[r] = max(mx[r], sj[r])


@njit(**_JIT)
def _values(o, p, v, n, lanes):
    """O += P^T . V over keys 0..n-1 of one tile (see :func:`_values_kernel`)."""
    if lanes == 16:
        _values16(o, p, v, n)
    elif lanes == 8:
        _values8(o, p, v, n)
    else:
        R, hd = o.shape
        for j in range(n):
            for r in range(R):
                e = p[j, r]
                for c in range(hd):
                    o[r, c] += e * v[j, c]


@njit(**_JIT)
def _softmax_tile(st, n, R, qpos, k0, masked, window, softcap, m, el, mx):
    """The online softmax of one tile, in place: ST rows 0..n-1 (keys k0..k0+n-1) become the
    weights P (0 where row r's query, at position qpos[r], may not see the key when
    ``masked``); m, el: the running max and sum per row; mx: the scores kernel's max per row
    (taken again here after a mask or a softcap), which becomes corr = exp(m_old - m_new)."""
    wide_vectors()  # type: ignore[call-arg]  # an intrinsic
    if masked or softcap > 0:
        mx[:R] = -np.inf
        inv = np.float32(1.0) / np.float32(softcap) if softcap > 0 else np.float32(0.0)
        for j in range(n):
            sj = st[j]
            if softcap > 0:
                for r in range(R):
                    sj[r] = np.float32(softcap) * fast_tanh(sj[r] * inv)
            if masked:
                kp = k0 + j
                for r in range(R):
                    seen = kp <= qpos[r] and (window <= 0 or qpos[r] - kp < window)
                    sj[r] = sj[r] if seen else np.float32(-np.inf)
            for r in range(R):
                mx[r] = max(mx[r], sj[r])
    for r in range(R):
        m_new = max(m[r], mx[r])
        # nothing seen yet: keep m at -inf, nothing to rescale (exp(-inf - -inf) is nan)
        mx[r] = np.float32(1.0) if m_new == -np.inf else expf(m[r] - m_new)
        m[r] = m_new
        el[r] *= mx[r]
    for j in range(n):
        sj = st[j]
        for r in range(R):
            x = sj[r]
            e = expf(x - m[r])
            sj[r] = e if x != -np.inf else np.float32(0.0)
            el[r] += sj[r]


@njit(**_JIT)
def _rescale(o, corr):
    """o[r] *= corr[r]: a task's output rows after their running max moved."""
    for r in range(o.shape[0]):
        c = corr[r]
        if c != 1.0:
            for i in range(o.shape[1]):
                o[r, i] *= c


@njit(**_JIT)
def _write_out(out, o, el, kv, q0, q1, groups):
    """A task's rows (query t, head g of KV head kv's group: row t * groups + g) normalised
    by their sums into out's queries q0..q1-1."""
    hd = o.shape[1]
    for t in range(q1 - q0):
        for g in range(groups):
            r = t * groups + g
            inv = np.float32(1.0) / el[r]
            h = (kv * groups + g) * hd
            for d in range(hd):
                out[q0 + t, h + d] = o[r, d] * inv


@njit(**_JIT)
def _task(out, q, k_head, v_head, kv, q0, q1, start, window, scale, groups, softcap, block,
          level):  # fmt: skip
    """Queries q0..q1-1 of the chunk (positions start + q0 ..) of the G = ``groups`` query
    heads of KV head ``kv`` over keys of k_head, v_head (ctx, head_dim); into ``out``."""
    hd = k_head.shape[1]
    lanes = vector_width(level, hd)
    step = 2 * lanes if lanes else 1
    R = (q1 - q0) * groups
    Rp = -(-R // step) * step
    qt = np.zeros((hd, Rp), np.float32)
    qpos = np.empty(Rp, np.int64)
    for t in range(q1 - q0):
        for g in range(groups):
            r = t * groups + g
            qpos[r] = start + q0 + t
            h = (kv * groups + g) * hd
            for d in range(hd):
                qt[d, r] = q[q0 + t, h + d] * np.float32(scale)
    qpos[R:] = start + q1 - 1  # padding rows (zero queries): any finite scores
    o = np.zeros((Rp, hd), np.float32)
    m = np.full(Rp, -np.inf, np.float32)
    el = np.zeros(Rp, np.float32)
    corr = np.empty(Rp, np.float32)
    st = np.empty((-(-block // 8) * 8, Rp), np.float32)
    kbuf = np.empty((block, hd), np.float32)
    vbuf = np.empty((block, hd), np.float32)
    first_q, last_q = start + q0, start + q1 - 1
    for k0 in range(window_start(first_q, window), last_q + 1, block):
        n = min(block, last_q + 1 - k0)
        masked = k0 + n - 1 > first_q or (window > 0 and last_q - k0 >= window)
        _scores(st, corr, _widen_rows(k_head, k0, n, kbuf), qt, n, lanes)
        _softmax_tile(st, n, Rp, qpos, k0, masked, window, softcap, m, el, corr)
        _rescale(o, corr)
        _values(o, st, _widen_rows(v_head, k0, n, vbuf), n, lanes)
    _write_out(out, o, el, kv, q0, q1, groups)


@njit(**_JIT)
def _bf16_pair(lo, hi):
    """The float32 bits lo, hi rounded to bf16 and packed into one uint32, lo in the low half
    (the operand lane of vdpbf16ps)."""
    return bf16_round(lo) | (bf16_round(hi) << np.uint32(16))


@njit(**_JIT)
def _pair_weights(pp, st, n, R):
    """pp[i, r] = the bf16 pair (P[2i, r], P[2i + 1, r]) of the tile's weights st, the low
    half first; a missing last odd row pairs with 0."""
    bits = st.view(np.uint32)
    for i in range(n // 2):
        for r in range(R):
            pp[i, r] = _bf16_pair(bits[2 * i, r], bits[2 * i + 1, r])
    if n % 2:
        for r in range(R):
            pp[n // 2, r] = _bf16_pair(bits[n - 1, r], np.uint32(0))


@njit(**_JIT)
def _pair_rows(vv, v_head, k0, n):
    """vv[i, c] = the bf16 pair (v[k0 + 2i, c], v[k0 + 2i + 1, c]) of a bf16 cache head's
    rows, the low half first; a missing last odd row pairs with 0."""
    hd = v_head.shape[1]
    low = np.uint32(0xFFFF)
    for i in range(n // 2):
        a, b = v_head[k0 + 2 * i], v_head[k0 + 2 * i + 1]
        for c in range(hd):
            vv[i, c] = (np.uint32(a[c]) & low) | ((np.uint32(b[c]) & low) << np.uint32(16))
    if n % 2:
        a = v_head[k0 + n - 1]
        for c in range(hd):
            vv[n // 2, c] = np.uint32(a[c]) & low


@njit(**_JIT)
def _task_bf16(out, q, k_head, v_head, kv, q0, q1, start, window, scale, groups, softcap,
               block):  # fmt: skip
    """:func:`_task` over a bf16 cache head with both products in vdpbf16ps: the scaled
    queries and the softmax weights rounded to bf16 (the products exact, summed in float32),
    twice the multiply-adds an instruction of the float32 FMA. head_dim a multiple of 16."""
    hd = k_head.shape[1]
    R = (q1 - q0) * groups
    Rp = -(-R // 32) * 32
    qt = np.zeros((hd // 2, Rp), np.uint32)  # Q^T as bf16 pairs of dims (2i, 2i + 1)
    qpos = np.empty(Rp, np.int64)
    qs = np.empty(hd, np.float32)
    qbits = qs.view(np.uint32)
    for t in range(q1 - q0):
        for g in range(groups):
            r = t * groups + g
            qpos[r] = start + q0 + t
            h = (kv * groups + g) * hd
            for d in range(hd):
                qs[d] = q[q0 + t, h + d] * np.float32(scale)
            for i in range(hd // 2):
                qt[i, r] = _bf16_pair(qbits[2 * i], qbits[2 * i + 1])
    qpos[R:] = start + q1 - 1
    o = np.zeros((Rp, hd), np.float32)
    m = np.full(Rp, -np.inf, np.float32)
    el = np.zeros(Rp, np.float32)
    corr = np.empty(Rp, np.float32)
    st = np.empty((-(-block // 8) * 8, Rp), np.float32)
    pp = np.empty((-(-block // 2), Rp), np.uint32)
    vv = np.empty((-(-block // 2), hd), np.uint32)
    first_q, last_q = start + q0, start + q1 - 1
    for k0 in range(window_start(first_q, window), last_q + 1, block):
        n = min(block, last_q + 1 - k0)
        masked = k0 + n - 1 > first_q or (window > 0 and last_q - k0 >= window)
        corr[:] = -np.inf
        _scores_bf16(st, corr, k_head[k0 : k0 + n], qt, n)
        _softmax_tile(st, n, Rp, qpos, k0, masked, window, softcap, m, el, corr)
        _rescale(o, corr)
        _pair_weights(pp, st, n, Rp)
        _pair_rows(vv, v_head, k0, n)
        _values_bf16(o, pp, vv, (n + 1) // 2)
    _write_out(out, o, el, kv, q0, q1, groups)


def _any_task(out, q, k_head, v_head, kv, q0, q1, start, window, scale, groups, softcap, block,
              level):  # fmt: skip
    """:func:`_task_bf16` for a bf16 cache where the host has the bf16 dot and the level's
    lanes are 16, else :func:`_task` (a bf16 cache widened to float32 tile by tile)."""


@overload(_any_task, jit_options=_JIT)
def _any_task_impl(out, q, k_head, v_head, kv, q0, q1, start, window, scale, groups, softcap,
                   block, level):  # fmt: skip
    if k_head.dtype == types.int16 and BF16_DOT:

        def pick(out, q, k_head, v_head, kv, q0, q1, start, window, scale, groups, softcap,
                 block, level):  # fmt: skip
            if vector_width(level, k_head.shape[1]) == 16:
                _task_bf16(out, q, k_head, v_head, kv, q0, q1, start, window, scale, groups,
                           softcap, block)  # fmt: skip
            else:
                _task(out, q, k_head, v_head, kv, q0, q1, start, window, scale, groups,
                      softcap, block, level)  # fmt: skip

        return pick
    return _task.py_func


@njit(**_JIT)
def _run_tasks(out, q, k_cache, v_cache, start, window, scale, groups, softcap, block, qb,
               level, first, every):  # fmt: skip
    """Tasks first, first + every, ... of the chunk: task i is query block i // n_kv of KV
    head i % n_kv (so the tasks of the later, longer query blocks alternate over workers)."""
    T, n_kv = q.shape[0], k_cache.shape[0]
    n_tasks = -(-T // qb) * n_kv
    for i in range(first, n_tasks, every):
        kv, q0 = i % n_kv, (i // n_kv) * qb
        _any_task(out, q, k_cache[kv], v_cache[kv], kv, q0, min(T, q0 + qb), start, window,
                  scale, groups, softcap, block, level)  # fmt: skip


@njit(cache=True, fastmath=_FM, error_model="numpy", nogil=True, parallel=True)
def _run_parallel(out, q, k_cache, v_cache, start, window, scale, groups, softcap, block, qb,
                  level):  # fmt: skip
    for w in prange(THREADS):
        _run_tasks(out, q, k_cache, v_cache, start, window, scale, groups, softcap, block, qb,
                   level, np.int64(w), np.int64(THREADS))  # fmt: skip


@njit(**_JIT)
def attend_chunk(out: Arr, q: Arr, k_cache: Arr, v_cache: Arr, start: int, window: int,
                 scale: float, groups: int, softcap: float = 0.0, block: int = KEY_BLOCK,
                 qb: int = QUERY_BLOCK, level: int = LEVEL) -> None:  # fmt: skip
    """Causal (``window`` > 0: sliding-window) attention of a chunk's T queries q (T, n_heads
    * head_dim), at positions start..start+T-1, over k_cache, v_cache (n_kv, ctx, head_dim;
    float32, uint16 holding f16 bits or int16 holding bf16 bits) whose positions
    0..start+T-1 hold the keys and values (the chunk's own included), into out (T, n_heads *
    head_dim). Query head h reads KV head h // ``groups``; ``softcap`` > 0 caps the scaled
    scores as softcap * tanh(s / softcap) (gemma2); ``block``: keys per tile; ``qb``: queries
    per task; ``level``: the IR kernels' lanes (16, 8; 0: plain loops). Over numba's threads
    when the chunk is big enough. The int arguments go on as int64s, never literals (see
    :func:`~trueno.llm.attention.attend_gqa`)."""
    blk, qbk, lv = np.int64(block), np.int64(qb), np.int64(level)
    T = q.shape[0]
    if THREADS == 1 or T * (start + T) < SERIAL_MAX:
        _run_tasks(out, q, k_cache, v_cache, start, window, scale, groups, softcap, blk, qbk,
                   lv, np.int64(0), np.int64(1))  # fmt: skip
    else:
        _run_parallel(out, q, k_cache, v_cache, start, window, scale, groups, softcap, blk,
                      qbk, lv)  # fmt: skip
