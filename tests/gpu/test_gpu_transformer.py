"""On a real GPU: the decode kernels of trueno.llm.gpu_kernels against numpy
formulas of the same definitions as trueno.llm.kernels (skips without cupy and a device)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu():
    import cupy as cp

    from trueno.llm import gpu_kernels as transformer

    return cp, transformer


def attend_ref(q, k, v, pos, window, scale, groups, softcap=0.0):
    n_heads, hd = q.shape
    first = max(0, pos - window + 1) if window > 0 else 0
    out = np.zeros_like(q, dtype=np.float64)
    for h in range(n_heads):
        kv = h // groups
        s = k[kv, first : pos + 1].astype(np.float64) @ q[h] * scale
        if softcap:
            s = softcap * np.tanh(s / softcap)
        p = np.exp(s - s.max())
        out[h] = (p / p.sum()) @ v[kv, first : pos + 1]
    return out


@pytest.mark.parametrize(
    "n_heads,n_kv,hd,ctx,pos,window,softcap",
    [
        (4, 4, 64, 16, 0, 0, 0.0),  # one slice, one position
        (8, 2, 64, 128, 100, 0, 0.0),  # one slice, several tiles
        (14, 2, 64, 512, 511, 0, 0.0),  # 4 slices; 7 heads per KV head
        (9, 3, 64, 4096, 3500, 0, 0.0),  # SmolLM2's heads at depth: 32 slices
        (4, 1, 256, 300, 299, 64, 0.0),  # window; 2 slices
        (2, 2, 128, 2048, 1500, 0, 0.0),
        (8, 1, 256, 4096, 5, 0, 0.0),  # more slices than positions: empty slices
        (2, 1, 256, 1024, 700, 100, 50.0),  # gemma2: window and softcap, 4 slices
        (32, 1, 64, 256, 200, 0, 0.0),  # the most heads per KV head
        (8, 1, 1024, 256, 40, 0, 3.0),  # 8 (head, value) accumulators per thread
    ],
)
def test_attend_one(gpu, n_heads, n_kv, hd, ctx, pos, window, softcap):
    """Each (KV head, slice) block's online softmax, and the merge of the slices' states,
    against softmax attention; the scratch starts as garbage (NaN): every value is written."""
    cp, tr = gpu
    rng = np.random.default_rng(pos)
    q = rng.standard_normal((n_heads, hd)).astype(np.float32)
    k = (3 * rng.standard_normal((n_kv, ctx, hd))).astype(np.float32)
    v = rng.standard_normal((n_kv, ctx, hd)).astype(np.float32)
    scale = 1 / np.sqrt(hd)
    out = cp.asarray(np.full((n_heads, hd), np.nan, np.float32))
    scores = cp.asarray(np.full((n_heads, ctx), np.nan, np.float32))
    groups = n_heads // n_kv
    args = (cp.asarray(q), cp.asarray(k), cp.asarray(v), pos, window, scale, groups, scores)
    tr.attend_one(out, *args, softcap)
    want = attend_ref(q, k, v, pos, window, scale, groups, softcap)
    np.testing.assert_allclose(out.get(), want, rtol=1e-4, atol=1e-5)


def test_attend_one_refuses_what_its_kernel_cannot_take(gpu):
    from trueno.errors import UnsupportedError

    _, tr = gpu
    tr.check_attention(64, 2, 64)  # 32 heads per KV head
    with pytest.raises(UnsupportedError, match="64 query heads of 64 per KV head"):
        tr.check_attention(64, 1, 64)
    with pytest.raises(UnsupportedError, match="16 query heads of 1024 per KV head"):
        tr.check_attention(16, 1, 1024)
    with pytest.raises(UnsupportedError, match="head_dim 2048"):
        tr.check_attention(2, 1, 2048)
    assert tr.attention_splits(128, 64) == 1
    assert tr.attention_splits(4096, 64) == 32
    assert tr.attention_splits(4096, 256) == 15  # the scratch holds 4096 // 258 states a head


@pytest.mark.parametrize("neox", [False, True])
def test_rope(gpu, neox):
    cp, tr = gpu
    rng = np.random.default_rng(0)
    T, H, D, rope_dim, max_pos = 3, 4, 64, 32, 50
    x = rng.standard_normal((T, H * D)).astype(np.float32)
    pos = np.array([0, 7, 49], np.int32)
    inv = 10000.0 ** (-np.arange(0, rope_dim, 2) / rope_dim)
    ang = np.arange(max_pos)[:, None] * inv[None, :]
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    want = x.copy().reshape(T, H, D)
    half = rope_dim // 2
    for t in range(T):
        c, s = cos[pos[t]], sin[pos[t]]
        ia = np.arange(half) if neox else 2 * np.arange(half)
        ib = ia + half if neox else ia + 1
        a, b = want[t][:, ia].copy(), want[t][:, ib].copy()
        want[t][:, ia] = a * c - b * s
        want[t][:, ib] = a * s + b * c
    dx = cp.asarray(x)
    tr.rope(dx, cp.asarray(pos), H, D, cp.asarray(cos), cp.asarray(sin), neox)
    np.testing.assert_allclose(dx.get(), want.reshape(T, H * D), rtol=1e-5, atol=1e-6)


def test_norms_and_gated(gpu):
    cp, tr = gpu
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 896)).astype(np.float32)
    w = rng.standard_normal(896).astype(np.float32)
    out = cp.empty_like(cp.asarray(x))
    tr.rms_norm(out, cp.asarray(x), cp.asarray(w), 1e-6)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(out.get(), ref, rtol=1e-5, atol=1e-6)
    dx = cp.asarray(x)
    tr.head_rms_norm(dx, 14, 64, cp.asarray(w[:64]), 1e-6)
    xh = x.reshape(3, 14, 64).astype(np.float64)
    ref = xh / np.sqrt((xh**2).mean(-1, keepdims=True) + 1e-6) * w[:64]
    np.testing.assert_allclose(dx.get(), ref.reshape(3, 896), rtol=1e-5, atol=1e-6)
    g = rng.standard_normal((2, 300)).astype(np.float32) * 4
    u = rng.standard_normal((2, 300)).astype(np.float32)
    o = cp.empty((2, 300), cp.float32)
    tr.silu_mul(o, cp.asarray(g), cp.asarray(u))
    np.testing.assert_allclose(o.get(), g / (1 + np.exp(-g)) * u, rtol=1e-5, atol=1e-6)
    tr.gelu_tanh_mul(o, cp.asarray(g), cp.asarray(u))
    gel = 0.5 * g * (1 + np.tanh(0.7978845608028654 * (g + 0.044715 * g**3))) * u
    np.testing.assert_allclose(o.get(), gel, rtol=1e-4, atol=1e-6)
