"""Numba kernels of the transformer block: norms, RoPE, attention over the KV cache, gated
activations. Output first (``rms_norm(out, x, w, eps)``), float32 in and out, no allocation.

This module imports numba, so only the CPU runtime (:mod:`trueno.llm.runtime`) imports it, with
the first model (never ``import trueno``). The numpy float64 forward in
``tests/llm/llm_reference.py`` is the spec these are checked against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from trueno.backends.numba_cache import drop_stale
from trueno.llm.attention import (  # noqa: F401  (the decode attention, re-exported)
    _FM,
    _JIT,
    ATTN_BLOCK,
    LEVEL,
    THREADS,
    Arr,
    attend_gqa,
    attend_one,
    attend_rows,
    attend_span,
    exp_shifted,
    f32_to_bf16_bits,
    fast_tanh,
    softcap_scores,
    window_start,
)

drop_stale(__file__, ("attention.py", "../quant/llvm_ir.py"))

GATED_PARALLEL_MIN = 1 << 15  # values of a gated activation worth a thread hand-off (~13 us)

if TYPE_CHECKING:
    from trueno.llm.kv_cache import LayerState


@njit(**_JIT)
def rms_norm(out: Arr, x: Arr, w: Arr, eps: float) -> None:
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
def add_rms_norm(x: Arr, y: Arr, w: Arr, eps: float) -> None:
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
def residual_norm(
    out: Arr, x: Arr, y: Arr, post_w: Arr, w: Arr, eps: float, post_norm: bool
) -> None:
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
def head_rms_norm(x: Arr, n_heads: int, head_dim: int, w: Arr, eps: float) -> None:
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
def rope(
    x: Arr, positions: Arr, n_heads: int, head_dim: int, cos: Arr, sin: Arr, neox: bool
) -> None:
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


@njit(**_JIT)
def f32_to_f16_bits(out: Arr, x: Arr) -> None:
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
    if dst.dtype == types.int16:
        return lambda dst, src, buf: f32_to_bf16_bits(dst, src)
    return lambda dst, src, buf: f32_to_f16_bits(dst, src)


@njit(**_JIT)
def _enter_token(q, k, v, k_cache, v_cache, pos, positions, cos, sin, neox, qk_norm, q_norm,
                 k_norm, eps, buf):  # fmt: skip
    """A decode token's q and k (1, heads * head_dim) normed per head (when ``qk_norm``) and
    rotated in place, its k and v written into the caches (n_kv_heads, ctx, head_dim) at
    ``pos`` (``buf``: scratch of the row conversion)."""
    n_kv, _, head_dim = k_cache.shape
    n_heads = q.shape[1] // head_dim
    if qk_norm:
        head_rms_norm(q, n_heads, head_dim, q_norm, eps)
        head_rms_norm(k, n_kv, head_dim, k_norm, eps)
    rope(q, positions, n_heads, head_dim, cos, sin, neox)
    rope(k, positions, n_kv, head_dim, cos, sin, neox)
    for h in range(n_kv):
        _store_row(k_cache[h, pos], k[0, h * head_dim : (h + 1) * head_dim], buf)
        _store_row(v_cache[h, pos], v[0, h * head_dim : (h + 1) * head_dim], buf)


@njit(**_JIT)
def attention_step(
    out: Arr,
    q: Arr,
    k: Arr,
    v: Arr,
    k_cache: Arr,
    v_cache: Arr,
    pos: int,
    positions: Arr,
    cos: Arr,
    sin: Arr,
    neox: bool,
    qk_norm: bool,
    q_norm: Arr,
    k_norm: Arr,
    eps: float,
    window: int,
    scale: float,
    scores: Arr,
    softcap: float = 0.0,
) -> None:
    """One decode step of attention, fused: optional per-head q/k RMS norm, RoPE, writing k, v
    into the cache at ``pos`` and attending over it.

    q, out: (1, n_heads * head_dim); k, v: (1, n_kv_heads * head_dim); caches
    (n_kv_heads, ctx, head_dim); positions: (1,) holding pos; q_norm, k_norm: (head_dim,)
    (ignored unless qk_norm); softcap > 0 caps the scores (gemma2).
    """
    n_kv, _, head_dim = k_cache.shape
    n_heads = q.shape[1] // head_dim
    _enter_token(q, k, v, k_cache, v_cache, pos, positions, cos, sin, neox, qk_norm, q_norm,
                 k_norm, eps, scores)  # fmt: skip
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
        np.int64(LEVEL),  # an int64, as every caller passes it (a literal compiles anew)
    )


def attention(
    layer: LayerState, out: Arr, q: Arr, k: Arr, v: Arr, pos: int, positions: Arr, scores: Arr
) -> None:
    """Decode's attention of one token in one layer: :func:`attention_step` over the layer's
    cache slice, tables, window, norms and constants (a
    :class:`~trueno.llm.kv_cache.LayerState`)."""
    attention_step(
        out, q, k, v, layer.key_cache, layer.value_cache, pos, positions, layer.cos, layer.sin,
        layer.neox, layer.qk_norm, layer.q_norm, layer.k_norm, layer.eps, layer.window,
        layer.scale, scores, layer.softcap,
    )  # fmt: skip


@njit(**_JIT)
def attention_rows(
    out: Arr,
    qkv: Arr,
    k_caches: Arr,
    v_caches: Arr,
    slots: Arr,
    positions: Arr,
    cos: Arr,
    sin: Arr,
    neox: bool,
    qk_norm: bool,
    q_norm: Arr,
    k_norm: Arr,
    eps: float,
    window: int,
    scale: float,
    softcap: float = 0.0,
) -> None:
    """:func:`attention_step` of B sequences in one call (a batched decode step's layer): row
    b of ``qkv`` (B, q_dim + 2 kv_dim: query, key, value) is the token at positions[b] of the
    sequence in slot slots[b] of k_caches, v_caches (n_slots, n_kv_heads, ctx, head_dim: this
    layer's caches of every slot); its attention output goes to out[b] (B, q_dim). Each row
    runs through attention_step's own norm, RoPE and cache write (``_enter_token``, on a copy of
    its row shaped as attention_step's operands) and :func:`attend_rows`, so each row's output and
    cache entries equal attention_step's bit for bit. ``qkv`` is left as it was."""
    B = qkv.shape[0]
    n_kv, head_dim = k_caches.shape[1], k_caches.shape[3]
    kv_dim = n_kv * head_dim
    q_dim = out.shape[1]
    n_heads = q_dim // head_dim
    qs = np.empty((B, q_dim), np.float32)
    q = np.empty((1, q_dim), np.float32)
    k = np.empty((1, kv_dim), np.float32)
    v = np.empty((1, kv_dim), np.float32)
    pos1 = np.empty(1, np.int32)
    firsts = np.empty(B, np.int64)
    ends = np.empty(B, np.int64)
    for b in range(B):
        pos, slot = positions[b], slots[b]
        pos1[0] = pos
        for i in range(q_dim):
            q[0, i] = qkv[b, i]
        for i in range(kv_dim):
            k[0, i] = qkv[b, q_dim + i]
            v[0, i] = qkv[b, q_dim + kv_dim + i]
        _enter_token(q, k, v, k_caches[slot], v_caches[slot], pos, pos1, cos, sin, neox, qk_norm,
                     q_norm, k_norm, eps, q)  # fmt: skip
        for i in range(q_dim):
            qs[b, i] = q[0, i]
        firsts[b] = window_start(pos, window)
        ends[b] = pos + 1
    attend_rows(
        out.reshape(B, n_heads, head_dim),
        qs.reshape(B, n_heads, head_dim),
        k_caches,
        v_caches,
        slots,
        firsts,
        ends,
        scale,
        n_heads // n_kv,
        softcap,
        np.int64(LEVEL),
    )


@njit(**_JIT)
def _gated_rows(out, gs, go, us, uo, gelu, r0, r1):
    """out[t] = act(gs[t, go:go+F]) * us[t, uo:uo+F] for rows r0..r1-1 (F = out.shape[1]):
    act gelu_tanh (PyTorch's approximate='tanh') when ``gelu``, else silu(x) = x *
    sigmoid(x) as x/2 * (1 + tanh(x/2)). Row slices of C arrays: the loops vectorize."""
    f = out.shape[1]
    half = np.float32(0.5)
    c = np.float32(0.7978845608028654)  # sqrt(2 / pi)
    for t in range(r0, r1):
        gt, ut, ot = gs[t][go : go + f], us[t][uo : uo + f], out[t]
        if gelu:
            for i in range(f):
                x = gt[i]
                inner = c * (x + np.float32(0.044715) * x * x * x)
                ot[i] = half * x * (np.float32(1.0) + fast_tanh(inner)) * ut[i]
        else:
            for i in range(f):
                x = gt[i]
                ot[i] = half * x * (np.float32(1.0) + fast_tanh(half * x)) * ut[i]


@njit(cache=True, fastmath=_FM, error_model="numpy", nogil=True, parallel=True)
def _gated_parallel(out, gs, go, us, uo, gelu):
    step = -(-out.shape[0] // THREADS)
    for w in prange(THREADS):
        _gated_rows(out, gs, go, us, uo, gelu, w * step, min(out.shape[0], (w + 1) * step))


@njit(**_JIT)
def gated_rows(out: Arr, gs: Arr, go: int, us: Arr, uo: int, gelu: bool) -> None:
    """out = act(gate) * up over (T, F) for gate = gs[:, go:go+F], up = us[:, uo:uo+F] (one
    (T, 2F) gate|up matmul's halves, or two arrays), C-contiguous 2-D arrays; act as
    :func:`_gated_rows`. Rows split over numba's threads from GATED_PARALLEL_MIN values (each
    row's arithmetic is the same either way)."""
    if THREADS > 1 and out.size >= GATED_PARALLEL_MIN:
        _gated_parallel(out, gs, go, us, uo, gelu)
    else:
        _gated_rows(out, gs, go, us, uo, gelu, 0, out.shape[0])


@njit(**_JIT)
def silu_mul(out: Arr, g: Arr, u: Arr) -> None:
    """out = silu(g) * u elementwise over (T, F), on the calling thread (decode's rows)."""
    _gated_rows(out, g, 0, u, 0, False, 0, g.shape[0])


@njit(**_JIT)
def gelu_tanh_mul(out: Arr, g: Arr, u: Arr) -> None:
    """out = gelu_tanh(g) * u elementwise over (T, F) (PyTorch's approximate='tanh')."""
    _gated_rows(out, g, 0, u, 0, True, 0, g.shape[0])
