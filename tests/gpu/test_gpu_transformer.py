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


def attend_ref(q, k, v, pos, window, scale, groups):
    n_heads, hd = q.shape
    first = max(0, pos - window + 1) if window > 0 else 0
    out = np.zeros_like(q, dtype=np.float64)
    for h in range(n_heads):
        kv = h // groups
        s = k[kv, first : pos + 1].astype(np.float64) @ q[h] * scale
        p = np.exp(s - s.max())
        out[h] = (p / p.sum()) @ v[kv, first : pos + 1]
    return out


@pytest.mark.parametrize(
    "n_heads,n_kv,hd,ctx,pos,window",
    [
        (4, 4, 64, 16, 0, 0),
        (8, 2, 64, 128, 100, 0),
        (14, 2, 64, 512, 511, 0),
        (4, 1, 256, 300, 299, 64),
        (2, 2, 128, 2048, 1500, 0),
    ],
)
def test_attend_one(gpu, n_heads, n_kv, hd, ctx, pos, window):
    cp, tr = gpu
    rng = np.random.default_rng(pos)
    q = rng.standard_normal((n_heads, hd)).astype(np.float32)
    k = rng.standard_normal((n_kv, ctx, hd)).astype(np.float32)
    v = rng.standard_normal((n_kv, ctx, hd)).astype(np.float32)
    scale = 1 / np.sqrt(hd)
    out = cp.empty((n_heads, hd), cp.float32)
    scores = cp.empty((n_heads, ctx), cp.float32)
    tr.attend_one(
        out,
        cp.asarray(q),
        cp.asarray(k),
        cp.asarray(v),
        pos,
        window,
        scale,
        n_heads // n_kv,
        scores,
    )
    np.testing.assert_allclose(
        out.get(), attend_ref(q, k, v, pos, window, scale, n_heads // n_kv), rtol=1e-4, atol=1e-5
    )


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
