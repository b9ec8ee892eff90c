"""The model's numba kernels against plain numpy (float64) formulas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trueno.llm import kernels
from trueno.llm.kv_cache import KVCache, rope_tables

SETTINGS = settings(max_examples=40, deadline=None)


def rng_for(seed):
    return np.random.default_rng(seed)


@SETTINGS
@given(t=st.integers(1, 5), d=st.integers(1, 70), seed=st.integers(0, 10**6))
def test_rms_norm(t, d, seed):
    r = rng_for(seed)
    x = r.standard_normal((t, d)).astype(np.float32)
    w = r.standard_normal(d).astype(np.float32)
    out = np.empty_like(x)
    kernels.rms_norm(out, x, w, 1e-6)
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt((x64**2).mean(axis=1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(
    t=st.integers(1, 4),
    h=st.integers(1, 4),
    half=st.integers(1, 16),
    extra=st.integers(0, 4),
    neox=st.booleans(),
    seed=st.integers(0, 10**6),
)
def test_rope_rotates_pairs_and_leaves_the_rest(t, h, half, extra, neox, seed):
    r = rng_for(seed)
    rope_dim, head_dim = 2 * half, 2 * half + 2 * extra
    x = r.standard_normal((t, h * head_dim)).astype(np.float32)
    pos = r.integers(0, 50, t).astype(np.int64)
    cos, sin = rope_tables(rope_dim, 10000.0, 50)
    got = x.copy()
    kernels.rope(got, pos, h, head_dim, cos, sin, neox)
    ref = x.astype(np.float64).reshape(t, h, head_dim).copy()
    theta = pos[:, None] * 10000.0 ** (-np.arange(half) * 2.0 / rope_dim)  # (t, half)
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    idx = np.arange(half)
    a, b = (idx, idx + half) if neox else (2 * idx, 2 * idx + 1)
    xa, xb = ref[:, :, a].copy(), ref[:, :, b].copy()
    ref[:, :, a] = xa * c - xb * s
    ref[:, :, b] = xa * s + xb * c
    np.testing.assert_allclose(got, ref.reshape(t, -1), rtol=1e-5, atol=1e-5)


@SETTINGS
@given(
    kv=st.integers(1, 3),
    groups=st.integers(1, 3),
    dh=st.integers(1, 20),
    pos=st.integers(0, 30),
    window=st.integers(0, 8),
    seed=st.integers(0, 10**6),
)
def test_attend_one_matches_softmax_attention(kv, groups, dh, pos, window, seed):
    r = rng_for(seed)
    ctx = 32
    kc = r.standard_normal((kv, ctx, dh)).astype(np.float32)
    vc = r.standard_normal((kv, ctx, dh)).astype(np.float32)
    q = r.standard_normal((kv * groups, dh)).astype(np.float32)
    out = np.empty_like(q)
    scale = 1 / np.sqrt(dh)
    kernels.attend_one(out, q, kc, vc, pos, window, scale, groups, np.empty(ctx, np.float32))
    first = max(0, pos - window + 1) if window else 0
    for h in range(kv * groups):
        k = kc[h // groups, first : pos + 1].astype(np.float64)
        s = k @ q[h] * scale
        p = np.exp(s - s.max())
        ref = (p / p.sum()) @ vc[h // groups, first : pos + 1]
        np.testing.assert_allclose(out[h], ref, rtol=1e-4, atol=1e-5)


@SETTINGS
@given(n=st.integers(1, 3), f=st.integers(1, 64), seed=st.integers(0, 10**6))
def test_gated_activations(n, f, seed):
    r = rng_for(seed)
    g = (3 * r.standard_normal((n, f))).astype(np.float32)
    u = r.standard_normal((n, f)).astype(np.float32)
    g64 = g.astype(np.float64)
    out = np.empty_like(g)
    kernels.silu_mul(out, g, u)
    np.testing.assert_allclose(out, g64 / (1 + np.exp(-g64)) * u, rtol=1e-5, atol=1e-5)
    kernels.gelu_tanh_mul(out, g, u)
    gelu = 0.5 * g64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (g64 + 0.044715 * g64**3)))
    np.testing.assert_allclose(out, gelu * u, rtol=1e-5, atol=1e-5)


def test_head_rms_norm_normalizes_each_head():
    r = rng_for(0)
    x = r.standard_normal((2, 3 * 8)).astype(np.float32)
    w = r.standard_normal(8).astype(np.float32)
    got = x.copy()
    kernels.head_rms_norm(got, 3, 8, w, 1e-6)
    h = x.reshape(2, 3, 8).astype(np.float64)
    ref = h / np.sqrt((h**2).mean(-1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(got, ref.reshape(2, -1), rtol=1e-5, atol=1e-6)


def test_kv_cache_store_layout():
    from trueno.llm.config import Config

    c = Config(
        arch="llama",
        vocab_size=8,
        dim=8,
        n_layers=2,
        n_heads=2,
        n_kv_heads=2,
        head_dim=4,
        hidden_dim=8,
        context_length=16,
        norm_eps=1e-5,
        rope_base=1e4,
        rope_dim=4,
        rope_neox=False,
    )
    cache = KVCache(c, 16)
    k = np.arange(3 * 8, dtype=np.float32).reshape(3, 8)
    cache.store(1, 5, k, -k)
    np.testing.assert_array_equal(cache.k[1, 1, 5:8], k[:, 4:])
    np.testing.assert_array_equal(cache.v[1, 0, 5:8], -k[:, :4])
    assert cache.nbytes == 2 * 2 * 2 * 16 * 4 * 4


def test_add_rms_norm_adds_the_normed_rows():
    r = rng_for(1)
    x = r.standard_normal((3, 10)).astype(np.float32)
    y = r.standard_normal((3, 10)).astype(np.float32)
    w = r.standard_normal(10).astype(np.float32)
    got = x.copy()
    kernels.add_rms_norm(got, y, w, 1e-6)
    y64 = y.astype(np.float64)
    ref = x + y64 / np.sqrt((y64**2).mean(-1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("post_norm", [False, True])
def test_residual_norm_equals_add_then_norm(post_norm):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 96)).astype(np.float32)
    y = rng.standard_normal((1, 96)).astype(np.float32)
    post_w, w = rng.standard_normal((2, 96)).astype(np.float32)
    want_x = x.copy()
    if post_norm:
        kernels.add_rms_norm(want_x, y, post_w, 1e-6)
    else:
        want_x += y
    want = np.empty_like(x)
    kernels.rms_norm(want, want_x, w, 1e-6)
    out = np.empty_like(x)
    kernels.residual_norm(out, x, y, post_w, w, 1e-6, post_norm)
    assert np.array_equal(x, want_x) and np.array_equal(out, want)
