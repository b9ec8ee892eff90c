"""GPU twins of :mod:`trueno.llm.kernels` for decoding on the device: same names, same
argument order (output first), float32 cupy arrays in and out, no allocation per call except
where noted. Kernels: ``transformer.cu`` (beside this module) (RoPE, attention over the KV cache),
``cuda/rowwise.cu`` (RMS norm) and fused ElementwiseKernels for the gated activations.

Imports cupy: load it only when decoding on the GPU.
"""

from __future__ import annotations

from functools import cache
from typing import TypeAlias

import cupy as cp
import numpy as np

from trueno.backends.cuda import elementwise, function

Dev: TypeAlias = cp.ndarray  # a float32 device array (positions: int32)

MAX_HEAD_DIM = 1024  # attend_merge_f32: a thread per value at least
MAX_GROUPS = 32  # ATTN_MAX_GROUPS of transformer.cu: query heads per KV head
MAX_PAIRS = 8  # ATTN_MAX_PAIRS: (head, value index) accumulators per thread of attend_one_f32
SPLIT_POSITIONS = 128  # context positions per thread block of decode attention
MAX_SPLITS = 64


def _threads(n: int, lo: int = 32, hi: int = 1024) -> int:
    return min(hi, max(lo, (n + 31) // 32 * 32))


def rms_norm(out: Dev, x: Dev, w: Dev, eps: float) -> None:
    """out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w for each row t of (T, D)."""
    rows, d = x.shape
    fn = function("rowwise", "rms_norm_f32")
    fn((rows,), (_threads(d // 4),), (x, out, np.int32(d), w, np.int32(1), np.float32(eps)))


def head_rms_norm(x: Dev, n_heads: int, head_dim: int, w: Dev, eps: float) -> None:
    """In place: RMS norm of each head slice of rows (T, n_heads * head_dim) with weight w
    (the row kernel may write over its input: no scratch buffer, so decode stays capturable)."""
    rows = x.shape[0] * n_heads
    fn = function("rowwise", "rms_norm_f32")
    fn(
        (rows,),
        (_threads(head_dim // 4),),
        (x, x, np.int32(head_dim), w, np.int32(1), np.float32(eps)),
    )


def rope(
    x: Dev, positions: Dev, n_heads: int, head_dim: int, cos: Dev, sin: Dev, neox: bool
) -> None:
    """In place: rotate rows (T, n_heads * head_dim) by their positions (device int32 (T,));
    ``cos``/``sin`` are device (max_pos, rope_dim // 2) tables, as in trueno.llm.kernels."""
    n_tokens = x.shape[0]
    half = cos.shape[1]
    fn = function("transformer", "rope_f32")
    fn(
        (n_tokens, n_heads),
        (_threads(half, hi=256),),
        (
            x,
            positions,
            np.int32(n_heads),
            np.int32(head_dim),
            cos,
            sin,
            np.int32(half),
            np.int32(bool(neox)),
        ),
    )


def attention_splits(ctx: int, head_dim: int) -> int:
    """Slices of positions :func:`attend_one_at` cuts a KV head into (thread blocks per KV
    head): one per ``SPLIT_POSITIONS`` of the context, at most ``MAX_SPLITS``, and no more
    than the (n_heads, ctx) scratch holds partial states for (head_dim + 2 floats each). Fixed
    by the context, not the position, so one captured graph serves every token."""
    return max(1, min(MAX_SPLITS, ctx // SPLIT_POSITIONS, ctx // (head_dim + 2)))


def check_attention(n_heads: int, n_kv: int, head_dim: int) -> None:
    """UnsupportedError for a head layout :func:`attend_one_at`'s kernel cannot take."""
    from trueno.errors import UnsupportedError

    groups = n_heads // n_kv
    if head_dim > MAX_HEAD_DIM:
        raise UnsupportedError(
            f"attend_one: head_dim {head_dim} > {MAX_HEAD_DIM} is not supported on the GPU"
        )
    if groups > MAX_GROUPS or groups * head_dim > MAX_PAIRS * 1024:
        raise UnsupportedError(
            f"attend_one: {groups} query heads of {head_dim} per KV head are more than the GPU "
            f"kernel takes (at most {MAX_GROUPS} heads, {MAX_PAIRS * 1024} values)"
        )


def attend_one(
    out: Dev,
    q: Dev,
    k_cache: Dev,
    v_cache: Dev,
    pos: int,
    window: int,
    scale: float,
    groups: int,
    scores: Dev,
    softcap: float = 0.0,
) -> None:
    """Attention of one query token at ``pos`` over the cache (decode).

    q, out: (n_heads, head_dim); k_cache, v_cache: (n_kv_heads, ctx, head_dim) holding keys
    0..pos; window > 0 keeps only keys with pos - j < window; scores: (n_heads, ctx) scratch
    (the CPU kernel's is (ctx,)), here the slices' partial states; softcap > 0 caps the
    scaled scores as ``softcap * tanh(score / softcap)`` (gemma2)."""
    positions = cp.asarray(np.array([pos], dtype=np.int32))
    attend_one_at(out, q, k_cache, v_cache, positions, window, scale, groups, scores, softcap)


def attend_one_at(
    out: Dev,
    q: Dev,
    k_cache: Dev,
    v_cache: Dev,
    positions: Dev,
    window: int,
    scale: float,
    groups: int,
    scores: Dev,
    softcap: float = 0.0,
) -> None:
    """:func:`attend_one` at the position held in device memory (``positions[0]``, int32):
    the launches do not change from token to token, so a CUDA graph can replay them.

    One thread block per (KV head, slice of positions): the GQA group's query heads read each
    key and value row once, with an online softmax (``attend_one_f32`` in transformer.cu);
    with more than one slice, ``attend_merge_f32`` combines their states from ``scores``."""
    n_heads, head_dim = q.shape
    n_kv, ctx, _ = k_cache.shape
    check_attention(n_heads, n_kv, head_dim)
    splits = attention_splits(ctx, head_dim)
    threads = _threads(groups * head_dim, lo=128)  # <= MAX_PAIRS (head, index) pairs each
    fn = function("transformer", "attend_one_f32")
    fn(
        (n_kv, splits),
        (threads,),
        (
            out,
            q,
            k_cache,
            v_cache,
            positions,
            np.int32(window),
            np.float32(scale),
            np.float32(softcap),
            np.int32(groups),
            np.int32(ctx),
            np.int32(head_dim),
            scores,
        ),
    )
    if splits > 1:
        merge = function("transformer", "attend_merge_f32")
        merge(
            (n_heads,),
            (_threads(head_dim, hi=1024),),
            (out, scores, np.int32(groups), np.int32(splits), np.int32(head_dim)),
        )


def store_kv(k_cache: Dev, v_cache: Dev, k: Dev, v: Dev, positions: Dev) -> None:
    """k_cache[:, pos] = k, v_cache[:, pos] = v for pos = positions[0] (device int32); k, v:
    (1, n_kv_heads * head_dim) rows of the current token."""
    n_kv, ctx, head_dim = k_cache.shape
    fn = function("transformer", "kv_store_f32")
    fn(
        (n_kv,),
        (_threads(head_dim, hi=256),),
        (k_cache, v_cache, k, v, positions, np.int32(ctx), np.int32(head_dim)),
    )


@cache
def _gated(name: str):
    e = elementwise.GATED[name]
    return cp.ElementwiseKernel(
        e.in_params, "T y", f"y = {e.expr}", f"trueno_{name}", preamble=elementwise.PREAMBLE
    )


def silu_mul(out: Dev, g: Dev, u: Dev) -> None:
    """out = silu(g) * u element-wise over (T, F)."""
    _gated("silu_mul")(g, u, out)


def gelu_tanh_mul(out: Dev, g: Dev, u: Dev) -> None:
    """out = gelu_tanh(g) * u element-wise over (T, F) (PyTorch's approximate='tanh')."""
    _gated("gelu_tanh_mul")(g, u, out)
