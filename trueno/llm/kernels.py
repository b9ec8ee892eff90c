"""Numba kernels of the transformer block: norms, RoPE, attention over the KV cache, gated
activations. Output first (``rms_norm(out, x, w, eps)``), float32 in and out, no allocation.

This module imports numba, so only the CPU runtime (:mod:`trueno.llm.runtime`) imports it, with
the first model (never ``import trueno``). The numpy float64 forward in
``tests/llm/llm_reference.py`` is the spec these are checked against.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

_FM = {"reassoc", "contract", "nsz"}  # lets reductions vectorize; no change to exp/tanh/nan
_JIT = dict(cache=True, fastmath=_FM, error_model="numpy", nogil=True)


@njit(**_JIT)
def rms_norm(out, x, w, eps):
    """out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w for each row t of (T, D)."""
    n, d = x.shape
    for t in range(n):
        row = x[t]
        ss = np.float32(0.0)
        for i in range(d):
            ss += row[i] * row[i]
        inv = np.float32(1.0) / np.sqrt(ss / np.float32(d) + np.float32(eps))
        o = out[t]
        for i in range(d):
            o[i] = row[i] * inv * w[i]


@njit(**_JIT)
def add_rms_norm(x, y, w, eps):
    """x[t] += y[t] / sqrt(mean(y[t]^2) + eps) * w (gemma's norm after a sublayer, fused with
    the residual add; x and y must not overlap)."""
    n, d = y.shape
    for t in range(n):
        row = y[t]
        ss = np.float32(0.0)
        for i in range(d):
            ss += row[i] * row[i]
        inv = np.float32(1.0) / np.sqrt(ss / np.float32(d) + np.float32(eps))
        xt = x[t]
        for i in range(d):
            xt[i] += row[i] * inv * w[i]


@njit(**_JIT)
def residual_norm(out, x, y, post_w, w, eps, post_norm):
    """Decode's step between sublayers in one call: ``x += y`` (``add_rms_norm`` with
    ``post_w`` when ``post_norm``), then ``out = rms_norm(x) * w``."""
    if post_norm:
        add_rms_norm(x, y, post_w, eps)
    else:
        n, d = y.shape
        for t in range(n):
            xt, yt = x[t], y[t]
            for i in range(d):
                xt[i] += yt[i]
    rms_norm(out, x, w, eps)


@njit(**_JIT)
def head_rms_norm(x, n_heads, head_dim, w, eps):
    """In place: RMS norm of each head slice of rows (T, n_heads * head_dim) with weight w."""
    n = x.shape[0]
    for t in range(n):
        for h in range(n_heads):
            v = x[t, h * head_dim : (h + 1) * head_dim]
            ss = np.float32(0.0)
            for i in range(head_dim):
                ss += v[i] * v[i]
            inv = np.float32(1.0) / np.sqrt(ss / np.float32(head_dim) + np.float32(eps))
            for i in range(head_dim):
                v[i] = v[i] * inv * w[i]


@njit(**_JIT)
def rope(x, positions, n_heads, head_dim, cos, sin, neox):
    """In place: rotate rows (T, n_heads * head_dim) by their positions.

    ``cos``/``sin`` are (max_pos, rope_dim // 2) tables. ``neox`` pairs (i, i + rope_dim/2);
    otherwise adjacent pairs (2i, 2i + 1) as in GGUF llama files (whose Q/K rows are permuted).
    """
    n = x.shape[0]
    half = cos.shape[1]
    for t in range(n):
        c = cos[positions[t]]
        s = sin[positions[t]]
        for h in range(n_heads):
            v = x[t, h * head_dim : (h + 1) * head_dim]
            if neox:
                for i in range(half):
                    a = v[i]
                    b = v[i + half]
                    v[i] = a * c[i] - b * s[i]
                    v[i + half] = a * s[i] + b * c[i]
            else:
                for i in range(half):
                    a = v[2 * i]
                    b = v[2 * i + 1]
                    v[2 * i] = a * c[i] - b * s[i]
                    v[2 * i + 1] = a * s[i] + b * c[i]


ATTN_BLOCK = 64  # key positions per block of the decode attention (scores stay in L1)
_F16_SCALE = np.float32(2.0**112)  # f16 bits << 13 read as f32, times this: the f16 value


def _widen_rows(cache, j0, n, buf):
    """Rows j0..j0+n of a (ctx, head_dim) cache head as float32 (a view, or widened into buf)."""


@overload(_widen_rows, jit_options=_JIT)
def _widen_rows_impl(cache, j0, n, buf):
    if cache.dtype == types.float32:
        return lambda cache, j0, n, buf: cache[j0 : j0 + n]

    def widen(cache, j0, n, buf):  # f16 as uint16 bits: exact, vectorizes (shift, or, mul)
        hd = cache.shape[1]
        src = cache[j0 : j0 + n]
        bits = buf[:n].view(np.uint32)
        out = buf[:n]
        for t in range(n):
            s, b, o = src[t], bits[t], out[t]
            for i in range(hd):
                h = np.uint32(s[i])
                b[i] = ((h & np.uint32(0x8000)) << np.uint32(16)) | (
                    (h & np.uint32(0x7FFF)) << np.uint32(13)
                )
            for i in range(hd):
                o[i] *= _F16_SCALE
        return out

    return widen


@njit(**_JIT)
def f32_to_f16_bits(out, x):
    """out[i] = the IEEE half (round to nearest even) of float32 x[i], as uint16 bits."""
    xb = x.view(np.uint32)
    for i in range(x.shape[0]):
        f = xb[i]
        sign = (f >> np.uint32(16)) & np.uint32(0x8000)
        a = f & np.uint32(0x7FFFFFFF)
        if a >= np.uint32(0x47800000):  # >= 65536 (rounds to inf), inf or nan
            o = np.uint32(0x7E00) if a > np.uint32(0x7F800000) else np.uint32(0x7C00)
            if a < np.uint32(0x7F800000) and a < np.uint32(0x477FF000):
                o = np.uint32(0x7BFF)
        elif a < np.uint32(0x38800000):  # below 2^-14: a subnormal half (or zero)
            o = np.uint32(np.rint(abs(x[i]) * np.float32(2.0**24)))
        else:
            odd = (a >> np.uint32(13)) & np.uint32(1)
            a = a - np.uint32(0x38000000) + np.uint32(0xFFF) + odd  # rebias 127 -> 15, round
            o = a >> np.uint32(13)
        out[i] = np.uint16(o | sign)


def _store_row(dst, src, buf):
    """dst[:] = src (one cache row), converting to the cache's dtype."""


@overload(_store_row, jit_options=_JIT)
def _store_row_impl(dst, src, buf):
    if dst.dtype == types.float32:

        def copy(dst, src, buf):
            for i in range(src.shape[0]):
                dst[i] = src[i]

        return copy
    return lambda dst, src, buf: f32_to_f16_bits(dst, src)


@njit(**_JIT)
def exp_shifted(p, n, m, ebits):
    """p[t] = exp(p[t] - m) for t < n, all p[t] <= m (Cephes' expf: 2^k times a degree-7
    polynomial, a couple of ulp): unlike np.exp it vectorizes. ebits: (>= n,) int32 scratch."""
    scale = ebits[:n].view(np.float32)
    for t in range(n):
        x = max(p[t] - m, np.float32(-87.0))
        k = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
        r = x - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
        y = np.float32(1.9875691500e-4)
        y = y * r + np.float32(1.3981999507e-3)
        y = y * r + np.float32(8.3334519073e-3)
        y = y * r + np.float32(4.1665795894e-2)
        y = y * r + np.float32(1.6666665459e-1)
        y = y * r + np.float32(5.0000001201e-1)
        p[t] = y * r * r + r + np.float32(1.0)
        ebits[t] = (np.int32(k) + np.int32(127)) << np.int32(23)
    for t in range(n):
        p[t] *= scale[t]


@njit(**_JIT)
def softcap_scores(p, n, mx, cap):
    """p[t] = cap * tanh(p[t] / cap) for t < n (gemma2's attention softcap); the new max of
    ``mx``, the old one (tanh is monotonic)."""
    inv = np.float32(1.0) / np.float32(cap)
    for t in range(n):
        p[t] = np.float32(cap) * fast_tanh(p[t] * inv)
    return np.float32(cap) * fast_tanh(mx * inv)


@njit(**_JIT)
def attend_span(acc, m, el, q, k_head, v_head, first, end, scale, kbuf, vbuf, p, ebuf,
                softcap=0.0):  # fmt: skip
    """Online-softmax attention of the G query heads q (G, head_dim) of one GQA group over keys
    first..end-1 of one KV head (ctx, head_dim), f32 or f16 bits: every key and value row is
    read from memory once, a block of ``ATTN_BLOCK`` positions at a time, for all G heads.
    Running state per query head: max ``m`` (G,), sum ``el`` (G,), unnormalised output
    ``acc`` (G, head_dim); the caller divides by ``el`` (or merges spans first).
    ``softcap`` > 0 caps each scaled score as ``softcap * tanh(score / softcap)``."""
    G, hd = q.shape
    for j0 in range(first, end, ATTN_BLOCK):
        n = min(ATTN_BLOCK, end - j0)
        kb = _widen_rows(k_head, j0, n, kbuf)
        vb = _widen_rows(v_head, j0, n, vbuf)
        for g in range(G):
            qg, pg = q[g], p[g]
            mx = np.float32(-np.inf)
            for t in range(n):
                kt = kb[t]
                s = np.float32(0.0)
                for i in range(hd):
                    s += qg[i] * kt[i]
                s *= np.float32(scale)
                pg[t] = s
                mx = max(mx, s)
            if softcap > 0:
                mx = softcap_scores(pg, n, mx, softcap)
            m_new = max(m[g], mx)
            corr = np.exp(m[g] - m_new)
            ag = acc[g]
            total = el[g] * corr
            for i in range(hd):
                ag[i] *= corr
            exp_shifted(pg, n, m_new, ebuf)
            for t in range(n):
                e = pg[t]
                total += e
                vt = vb[t]
                for i in range(hd):
                    ag[i] += e * vt[i]
            el[g] = total
            m[g] = m_new


@njit(**_JIT)
def attend_gqa(out, q, k_cache, v_cache, first, end, scale, groups, softcap=0.0):
    """Attention of one query token (q, out: (n_heads, head_dim)) over cache positions
    first..end-1 of k_cache, v_cache (n_kv_heads, ctx, head_dim; float32, or uint16 holding
    f16 bits): one online-softmax pass per KV head serving its ``groups`` query heads."""
    n_heads, hd = q.shape
    n_kv = k_cache.shape[0]
    kbuf = np.empty((ATTN_BLOCK, hd), np.float32)
    vbuf = np.empty((ATTN_BLOCK, hd), np.float32)
    p = np.empty((groups, ATTN_BLOCK), np.float32)
    ebuf = np.empty(ATTN_BLOCK, np.int32)
    m = np.empty(groups, np.float32)
    el = np.empty(groups, np.float32)
    for kv in range(n_kv):
        h0 = kv * groups
        acc = out[h0 : h0 + groups]
        acc[:] = 0.0
        m[:] = -np.inf
        el[:] = 0.0
        attend_span(acc, m, el, q[h0 : h0 + groups], k_cache[kv], v_cache[kv], first, end,
                    scale, kbuf, vbuf, p, ebuf, softcap)  # fmt: skip
        for g in range(groups):
            inv = np.float32(1.0) / el[g]
            for i in range(hd):
                acc[g, i] *= inv


@njit(**_JIT)
def window_start(pos, window):
    """First key position a query at ``pos`` sees (window > 0: keys with pos - j < window)."""
    if window > 0 and pos - window + 1 > 0:
        return pos - window + 1
    return 0


@njit(**_JIT)
def attend_one(out, q, k_cache, v_cache, pos, window, scale, groups, scores, softcap=0.0):
    """Attention of one query token at ``pos`` over the cache (decode).

    q, out: (n_heads, head_dim); k_cache, v_cache: (n_kv_heads, ctx, head_dim) holding keys
    0..pos; window > 0 keeps only keys with pos - j < window; scores: (ctx,) scratch;
    softcap > 0: scores -> softcap * tanh(scores / softcap).
    """
    n_heads, head_dim = q.shape
    first = window_start(pos, window)
    for h in range(n_heads):
        kv = h // groups
        qh = q[h]
        m = np.float32(-np.inf)
        for j in range(first, pos + 1):
            kj = k_cache[kv, j]
            s = np.float32(0.0)
            for i in range(head_dim):
                s += qh[i] * kj[i]
            s *= np.float32(scale)
            scores[j] = s
            m = max(m, s)
        if softcap > 0:
            m = softcap_scores(scores[first:], pos + 1 - first, m, softcap)
        total = np.float32(0.0)
        for j in range(first, pos + 1):
            e = np.exp(scores[j] - m)
            scores[j] = e
            total += e
        oh = out[h]
        for i in range(head_dim):
            oh[i] = np.float32(0.0)
        for j in range(first, pos + 1):
            p = scores[j] / total
            vj = v_cache[kv, j]
            for i in range(head_dim):
                oh[i] += p * vj[i]


@njit(**_JIT)
def attention_step(
    out,
    q,
    k,
    v,
    k_cache,
    v_cache,
    pos,
    positions,
    cos,
    sin,
    neox,
    qk_norm,
    q_norm,
    k_norm,
    eps,
    window,
    scale,
    scores,
    softcap=0.0,
):
    """One decode step of attention, fused: optional per-head q/k RMS norm, RoPE, writing k, v
    into the cache at ``pos`` and attending over it.

    q, out: (1, n_heads * head_dim); k, v: (1, n_kv_heads * head_dim); caches
    (n_kv_heads, ctx, head_dim); positions: (1,) holding pos; q_norm, k_norm: (head_dim,)
    (ignored unless qk_norm); softcap > 0 caps the scores (gemma2).
    """
    n_kv, _, head_dim = k_cache.shape
    n_heads = q.shape[1] // head_dim
    if qk_norm:
        head_rms_norm(q, n_heads, head_dim, q_norm, eps)
        head_rms_norm(k, n_kv, head_dim, k_norm, eps)
    rope(q, positions, n_heads, head_dim, cos, sin, neox)
    rope(k, positions, n_kv, head_dim, cos, sin, neox)
    for h in range(n_kv):
        _store_row(k_cache[h, pos], k[0, h * head_dim : (h + 1) * head_dim], scores)
        _store_row(v_cache[h, pos], v[0, h * head_dim : (h + 1) * head_dim], scores)
    attend_gqa(
        out.reshape(n_heads, head_dim),
        q.reshape(n_heads, head_dim),
        k_cache,
        v_cache,
        window_start(pos, window),
        pos + 1,
        scale,
        n_heads // n_kv,
        softcap,
    )


@njit(**_JIT)
def fast_tanh(x):
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
def silu_mul(out, g, u):
    """out = silu(g) * u elementwise over (T, F); silu(x) = x * sigmoid(x) computed as
    x/2 * (1 + tanh(x/2)) so the loop vectorizes."""
    n, f = g.shape
    half = np.float32(0.5)
    for t in range(n):
        gt, ut, ot = g[t], u[t], out[t]
        for i in range(f):
            x = gt[i]
            ot[i] = half * x * (np.float32(1.0) + fast_tanh(half * x)) * ut[i]


@njit(**_JIT)
def gelu_tanh_mul(out, g, u):
    """out = gelu_tanh(g) * u elementwise over (T, F) (PyTorch's approximate='tanh')."""
    n, f = g.shape
    c = np.float32(0.7978845608028654)  # sqrt(2 / pi)
    for t in range(n):
        gt, ut, ot = g[t], u[t], out[t]
        for i in range(f):
            x = gt[i]
            inner = c * (x + np.float32(0.044715) * x * x * x)
            ot[i] = np.float32(0.5) * x * (np.float32(1.0) + fast_tanh(inner)) * ut[i]
