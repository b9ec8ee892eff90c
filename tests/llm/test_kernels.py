"""The model's numba kernels against plain numpy (float64) formulas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from trueno.llm import attention, kernels, prefill_attention
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
    softcap=st.sampled_from([0.0, 0.5, 3.0]),
    seed=st.integers(0, 10**6),
)
def test_attend_one_matches_softmax_attention(kv, groups, dh, pos, window, softcap, seed):
    r = rng_for(seed)
    ctx = 32
    kc = r.standard_normal((kv, ctx, dh)).astype(np.float32)
    vc = r.standard_normal((kv, ctx, dh)).astype(np.float32)
    q = r.standard_normal((kv * groups, dh)).astype(np.float32)
    out = np.empty_like(q)
    scale = 1 / np.sqrt(dh)
    scores = np.empty(ctx, np.float32)
    kernels.attend_one(out, q, kc, vc, pos, window, scale, groups, scores, softcap)
    first = max(0, pos - window + 1) if window else 0
    for h in range(kv * groups):
        k = kc[h // groups, first : pos + 1].astype(np.float64)
        s = k @ q[h] * scale
        if softcap:
            s = softcap * np.tanh(s / softcap)
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


@SETTINGS
@given(n=st.integers(1, 40), f=st.integers(1, 900), fused=st.booleans(), gelu=st.booleans(),
       seed=st.integers(0, 10**6))  # fmt: skip
def test_gated_rows_reads_halves_in_place_and_splits_rows_exactly(n, f, fused, gelu, seed):
    """Prefill's gated activation: the gate and up halves read in place from one (T, 2F)
    array (or two arrays), rows over the threads past GATED_PARALLEL_MIN values; equal bit for
    bit to decode's silu_mul / gelu_tanh_mul on copies of the halves."""
    r = rng_for(seed)
    gu = (3 * r.standard_normal((n, 2 * f))).astype(np.float32)
    g, u = np.ascontiguousarray(gu[:, :f]), np.ascontiguousarray(gu[:, f:])
    out, want = np.empty_like(g), np.empty_like(g)
    if fused:
        kernels.gated_rows(out, gu, 0, gu, f, gelu)
    else:
        kernels.gated_rows(out, g, 0, u, 0, gelu)
    (kernels.gelu_tanh_mul if gelu else kernels.silu_mul)(want, g, u)
    np.testing.assert_array_equal(out, want)


@pytest.mark.skipif(not attention.F16C, reason="narrow_rows needs F16C")
@SETTINGS
@given(scale=st.sampled_from([1e-7, 1e-5, 1.0, 6e4]), t=st.integers(1, 9),
       start=st.integers(0, 5), seed=st.integers(0, 10**6))  # fmt: skip
def test_narrow_rows_rounds_as_numpy_into_each_head(scale, t, start, seed):
    """A prefill chunk's keys into a half cache: each head's rows at start.., numpy's f16."""
    n_kv, hd = 3, 8
    x = (scale * rng_for(seed).standard_normal((t, n_kv * hd))).astype(np.float32)
    x[0, :6] = [0.0, -0.0, np.inf, 65519.0, 65520.0, 2.9802322e-08]
    dst = np.zeros((n_kv, 16, hd), np.uint16)
    attention.narrow_rows(dst, start, x)
    with np.errstate(over="ignore"):
        want = x.reshape(t, n_kv, hd).transpose(1, 0, 2).astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(dst[:, start : start + t], want)
    assert not dst[:, :start].any() and not dst[:, start + t :].any()


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


def _softmax_attention(q, kc, vc, first, end, scale, groups, softcap=0.0):
    """float64 reference: each query head over keys first..end-1 of its KV head; softcap > 0
    caps the scaled scores as softcap * tanh(score / softcap) (gemma2)."""
    out = np.empty(q.shape, np.float64)
    for h in range(q.shape[0]):
        s = kc[h // groups, first:end].astype(np.float64) @ q[h].astype(np.float64) * scale
        if softcap:
            s = softcap * np.tanh(s / softcap)
        p = np.exp(s - s.max())
        out[h] = (p / p.sum()) @ vc[h // groups, first:end].astype(np.float64)
    return out


def _assert_chunk_attention(out, q, kc, vc, start, window, scale, groups, softcap,
                            tol=(1e-4, 1e-5)):  # fmt: skip
    """out (T, n_heads * head_dim): each query's causal (windowed) attention at start + i,
    within ``tol`` (rtol, atol)."""
    t, dh = q.shape[0], kc.shape[2]
    qh = q.reshape(t, -1, dh)
    for i in range(t):
        pos = start + i
        first = max(0, pos - window + 1) if window else 0
        ref = _softmax_attention(qh[i], kc, vc, first, pos + 1, scale, groups, softcap)
        np.testing.assert_allclose(out[i].reshape(-1, dh), ref, rtol=tol[0], atol=tol[1])


def _cache_pair(r, kv, ctx, dh, half):
    """Random keys (spread 3) and values (n_kv, ctx, dh): as the kernel takes them (f32, or
    f16 bits) and as float arrays of the same values for the reference."""
    kc = (3 * r.standard_normal((kv, ctx, dh))).astype(np.float32)
    vc = r.standard_normal((kv, ctx, dh)).astype(np.float32)
    if not half:
        return kc, vc, kc, vc
    kc, vc = kc.astype(np.float16), vc.astype(np.float16)
    return kc.view(np.uint16), vc.view(np.uint16), kc, vc


# prefill's bf16 products round the scaled queries and the weights to 8 mantissa bits
BF16_TOL = (2e-2, 2e-2)


def _bf16_pair(r, kv, ctx, dh):
    """Random keys (spread 3) and values as a bf16 cache's int16 bits, and as float32 arrays
    of the same values."""
    from trueno.floats import bf16_to_f32, f32_to_bf16

    kc = (3 * r.standard_normal((kv, ctx, dh))).astype(np.float32)
    vc = r.standard_normal((kv, ctx, dh)).astype(np.float32)
    kb, vb = f32_to_bf16(kc).view(np.int16), f32_to_bf16(vc).view(np.int16)
    return kb, vb, bf16_to_f32(kb).reshape(kc.shape), bf16_to_f32(vb).reshape(vc.shape)


def test_f32_to_bf16_bits_rounds_as_the_gguf_conversion():
    """The kernels' bf16 narrowing (decode's row, prefill's chunk) gives floats.f32_to_bf16's
    bits: ties to even, overflow to inf, NaN kept quiet."""
    from trueno.floats import f32_to_bf16

    r = rng_for(3)
    with np.errstate(over="ignore"):
        x = (r.standard_normal(4000) * 10.0 ** r.integers(-40, 38, 4000)).astype(np.float32)
    ties = np.array([0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x00008000, 0x80018000, 0x7FC00001,
                     0xFF800001, 0x7F800000], np.uint32).view(np.float32)  # fmt: skip
    edges = np.array([0.0, -0.0, np.inf, -np.inf], np.float32)
    x = np.concatenate([ties, x, edges])
    out = np.zeros(x.shape, np.int16)
    attention.f32_to_bf16_bits(out, x)
    np.testing.assert_array_equal(out.view(np.uint16), f32_to_bf16(x))
    n_kv, hd, t = 2, 8, 3
    src = x[: t * n_kv * hd].reshape(t, n_kv * hd)
    dst = np.zeros((n_kv, 6, hd), np.int16)
    attention.narrow_rows(dst, 2, src)
    want = f32_to_bf16(src.reshape(t, n_kv, hd).transpose(1, 0, 2)).view(np.int16)
    np.testing.assert_array_equal(dst[:, 2:5], want)
    assert not dst[:, :2].any() and not dst[:, 5:].any()


@pytest.mark.parametrize("level", attention.LEVELS)
@pytest.mark.parametrize(("kv", "groups", "dh", "n"), [(3, 3, 64, 1300), (1, 4, 256, 40),
                                                       (2, 1, 24, 9)])  # fmt: skip
def test_bf16_cache_decode_attention_is_the_f32_kernel_on_its_values(level, kv, groups, dh, n):
    """Decode reads a bf16 cache by moving each value into the top of a float: the outputs
    equal, bit for bit, the f32 cache's holding the same values, at every level (threaded
    past SPLIT_MIN, serial below)."""
    r = rng_for(n)
    kb, vb, kf, vf = _bf16_pair(r, kv, n, dh)
    q = r.standard_normal((kv * groups, dh)).astype(np.float32)
    outs = [np.full_like(q, np.nan), np.full_like(q, np.nan)]
    for out, (k, v) in zip(outs, ((kb, vb), (kf, vf)), strict=True):
        kernels.attend_gqa(out, q, k, v, 0, n, 1 / np.sqrt(dh), groups, 0.0, level)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(
        outs[0],
        _softmax_attention(q, kf, vf, 0, n, 1 / np.sqrt(dh), groups, 0.0),
        rtol=1e-4,
        atol=1e-5,
    )


@settings(max_examples=30, deadline=None)
@given(
    kv=st.integers(1, 3),
    groups=st.integers(1, 5),
    dh=st.sampled_from([8, 16, 24, 64, 256]),
    start=st.integers(0, 300),
    t=st.integers(1, 40),
    window=st.sampled_from([0, 7, 50]),
    block=st.sampled_from([1, 3, 8, 13, 128]),
    qb=st.sampled_from([1, 5, 32]),
    softcap=st.sampled_from([0.0, 3.0]),
    level=st.sampled_from(attention.LEVELS),
    seed=st.integers(0, 10**6),
)
def test_attend_chunk_over_a_bf16_cache(kv, groups, dh, start, t, window, block, qb, softcap,
                                        level, seed):  # fmt: skip
    """Prefill over a bf16 cache. With vdpbf16ps (AVX512-BF16 hosts, 16 lanes, head_dim a
    multiple of 16) the scaled queries and the softmax weights are rounded to bf16 too: within
    a bf16 bound of the float64 reference on the cache's values. Otherwise the tiles are
    widened to float32: bit for bit the f32 cache's outputs for the same values."""
    from trueno.llm import prefill_attention as pa

    r = rng_for(seed)
    kb, vb, kf, vf = _bf16_pair(r, kv, start + t, dh)
    q = r.standard_normal((t, kv * groups * dh)).astype(np.float32)
    scale = 1 / np.sqrt(dh)
    out, plain = np.full_like(q, np.nan), np.full_like(q, np.nan)
    pa.attend_chunk(out, q, kb, vb, start, window, scale, groups, softcap, block, qb, level)
    pa.attend_chunk(plain, q, kf, vf, start, window, scale, groups, softcap, block, qb, level)
    if pa.BF16_DOT and attention.vector_width(level, dh) == 16:
        _assert_chunk_attention(out, q, kf, vf, start, window, scale, groups, softcap, BF16_TOL)
    else:
        np.testing.assert_array_equal(out, plain)


@pytest.mark.skipif(
    not prefill_attention.BF16_DOT,
    reason="bf16 products skipped: the host or numba's target lacks avx512bf16",
)
def test_bf16_products_run_where_the_host_has_them():
    """On an AVX512-BF16 host a bf16 cache's prefill takes the vdpbf16ps tiles: its outputs
    differ from the f32 cache's, within the bf16 bound, while the same cache widened to
    float32 tiles (8 lanes) gives the f32 cache's."""
    from trueno.llm import prefill_attention as pa

    r = rng_for(11)
    kv, groups, dh, start, t = 3, 3, 64, 200, 70
    kb, vb, kf, vf = _bf16_pair(r, kv, start + t, dh)
    q = r.standard_normal((t, kv * groups * dh)).astype(np.float32)
    outs = {}
    for name, (k, v), level in (("bf16", (kb, vb), 16), ("widened", (kb, vb), 8),
                                ("f32", (kf, vf), 16)):  # fmt: skip
        outs[name] = np.full_like(q, np.nan)
        pa.attend_chunk(outs[name], q, k, v, start, 0, 0.125, groups, 0.0, pa.KEY_BLOCK,
                        pa.QUERY_BLOCK, level)  # fmt: skip
    assert np.abs(outs["bf16"] - outs["f32"]).max() > 1e-4
    np.testing.assert_allclose(outs["widened"], outs["f32"], rtol=1e-5, atol=1e-6)
    _assert_chunk_attention(outs["bf16"], q, kf, vf, start, 0, 0.125, groups, 0.0, BF16_TOL)


HEAD_DIMS = st.one_of(st.integers(1, 80), st.sampled_from([64, 128, 176, 256]))  # 8 | dh: SIMD


@settings(max_examples=60, deadline=None)
@given(
    kv=st.integers(1, 3),
    groups=st.integers(1, 10),  # past 8: the IR kernels' head chunks
    dh=HEAD_DIMS,
    pos=st.integers(0, 1300),  # many blocks; past SPLIT_MIN, so threads split positions
    window=st.sampled_from([0, 1, 7, 100, 600]),
    half=st.booleans(),
    softcap=st.sampled_from([0.0, 0.5, 3.0]),
    level=st.sampled_from(attention.LEVELS),
    seed=st.integers(0, 10**6),
)
def test_attend_gqa_matches_softmax_attention(kv, groups, dh, pos, window, half, softcap, level,
                                              seed):  # fmt: skip
    r = rng_for(seed)
    k_arg, v_arg, kc, vc = _cache_pair(r, kv, pos + 1, dh, half)
    q = r.standard_normal((kv * groups, dh)).astype(np.float32)
    out = np.full_like(q, np.nan)
    first = kernels.window_start(pos, window)
    assert first == (max(0, pos - window + 1) if window else 0)
    kernels.attend_gqa(out, q, k_arg, v_arg, first, pos + 1, 1 / np.sqrt(dh), groups, softcap,
                       level)  # fmt: skip
    ref = _softmax_attention(q, kc, vc, first, pos + 1, 1 / np.sqrt(dh), groups, softcap)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    kv=st.integers(1, 3),
    groups=st.integers(1, 3),
    dh=HEAD_DIMS,
    first=st.integers(0, 300),
    n=st.integers(1, 900),
    parts=st.integers(1, 4),
    half=st.booleans(),
    level=st.sampled_from(attention.LEVELS),
    seed=st.integers(0, 10**6),
)
def test_attention_split_over_positions_merges_exactly(kv, groups, dh, first, n, parts, half,
                                                       level, seed):  # fmt: skip
    """Slices of positions with their own running max and sum, merged (flash-decoding), give
    the one-pass answer, whatever the host's thread count; and the serial path agrees."""
    r = rng_for(seed)
    k_arg, v_arg, kc, vc = _cache_pair(r, kv, first + n, dh, half)
    q = r.standard_normal((kv * groups, dh)).astype(np.float32)
    cap = 2.0  # gemma2's softcap rides through the slices too
    ref = _softmax_attention(q, kc, vc, first, first + n, 0.3, groups, cap)
    split = np.full_like(q, np.nan)
    attention.attend_threaded(split, q, k_arg, v_arg, first, first + n, 0.3, groups, parts, cap,
                              level)  # fmt: skip
    np.testing.assert_allclose(split, ref, rtol=1e-4, atol=1e-5)
    alone = np.full_like(q, np.nan)
    attention.attend_serial(alone, q, k_arg, v_arg, first, first + n, 0.3, groups, cap, level)
    np.testing.assert_allclose(alone, ref, rtol=1e-4, atol=1e-5)


def test_split_positions_balances_threads():
    from trueno.llm.attention import SPLIT_MIN, split_positions

    assert split_positions(3500, 3, 2) == 2  # 6 tasks: 3 per thread, not 2 and 1
    assert split_positions(3500, 1, 2) == 2
    assert split_positions(3500, 2, 2) == 1  # the heads alone fill both threads
    assert split_positions(3500, 1, 4) == 4
    assert split_positions(SPLIT_MIN - 1, 1, 2) == 1  # too short to be worth a split
    assert split_positions(3500, 5, 1) == 1


def test_levels_follow_the_host():
    from trueno.cpu import cpu_features

    host = cpu_features()
    simd = host["avx2"] and host["fma"] and host["f16c"]
    assert attention.LEVEL == (16 if simd and host["avx512f"] else 8 if simd else 0)
    assert attention.LEVELS[-1] == 0 and attention.LEVELS[0] == attention.LEVEL
    assert [attention.vector_width(16, d) for d in (64, 72, 70)] == [16, 8, 0]
    assert [attention.vector_width(8, d) for d in (64, 72, 70)] == [8, 8, 0]
    assert attention.vector_width(0, 64) == 0


@njit
def _vector_kernels(lanes, s, q, k, acc, p, v, n):
    """The kernels over the first n rows of k and v, prefetching rows ahead up to their end."""
    if lanes == 16:
        attention._scores16(s, q, k[:n], n, k.shape[0])
        attention._accumulate16(acc, p, v[:n], n, v.shape[0])
    else:
        attention._scores8(s, q, k[:n], n, k.shape[0])
        attention._accumulate8(acc, p, v[:n], n, v.shape[0])


@pytest.mark.skipif(not attention.SIMD, reason="the IR kernels need AVX2, FMA and F16C")
@settings(max_examples=40, deadline=None)
@given(
    lanes=st.sampled_from([w for w in attention.LEVELS if w]),
    heads=st.integers(1, 11),  # chunks of 4 heads, each count its own body
    vecs=st.sampled_from([1, 2, 3, 4, 5, 11, 16]),  # stripes of 2^k vectors, then the rest
    n=st.integers(1, 40),  # the last 8-row group repeats row n - 1; value tiles of 16 KB
    more=st.sampled_from([0, 1, 200]),  # rows past n: prefetched, never read
    half=st.booleans(),
    seed=st.integers(0, 10**6),
)
def test_vector_kernels_against_numpy(lanes, heads, vecs, n, more, half, seed):
    """The two IR kernels on their own, f16 rows read as they are: scores of G heads for n
    rows (8-row groups, 8x8 transpose-add per head) and the G value sums (stripes of output
    vectors in registers). Rows past n (NaN) are only prefetched."""
    r = rng_for(seed)
    dh = lanes * vecs
    k = np.full((n + more, dh), np.nan, np.float32)
    v = np.full((n + more, dh), np.nan, np.float32)
    k[:n] = r.standard_normal((n, dh))
    v[:n] = r.standard_normal((n, dh))
    if half:
        k, v = k.astype(np.float16), v.astype(np.float16)
    q = r.standard_normal((heads, dh)).astype(np.float32)
    p = r.standard_normal((heads, -(-n // 8) * 8)).astype(np.float32)
    s = np.full((heads, p.shape[1]), np.nan, np.float32)
    acc = r.standard_normal((heads, dh)).astype(np.float32)
    want_acc = acc + p[:, :n].astype(np.float64) @ v[:n].astype(np.float64)
    kb, vb = (k.view(np.uint16), v.view(np.uint16)) if half else (k, v)
    _vector_kernels(lanes, s, q, kb, acc, p, vb, n)
    np.testing.assert_allclose(s[:, :n], q.astype(np.float64) @ k[:n].T.astype(np.float64),
                               rtol=1e-5, atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(acc, want_acc, rtol=1e-5, atol=1e-4)


@SETTINGS
@given(scale=st.sampled_from([1e-7, 1e-5, 1e-3, 1.0, 300.0, 6e4]), seed=st.integers(0, 10**6))
def test_f32_to_f16_bits_rounds_as_numpy(scale, seed):
    x = (scale * rng_for(seed).standard_normal(500)).astype(np.float32)
    x[:8] = [0.0, -0.0, np.inf, -np.inf, 65504.0, 65519.0, 65520.0, 2.9802322e-08]
    out = np.empty(x.shape, np.uint16)
    kernels.f32_to_f16_bits(out, x)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out, x.astype(np.float16).view(np.uint16))


def test_f32_to_f16_bits_keeps_nan():
    out = np.empty(1, np.uint16)
    kernels.f32_to_f16_bits(out, np.array([np.nan], np.float32))
    assert np.isnan(out.view(np.float16)[0])


@SETTINGS
@given(x=st.lists(st.floats(-200.0, 0.0, width=32), min_size=1, max_size=70))
def test_exp_shifted_matches_exp(x):
    p = np.array(x, np.float32)
    kernels.exp_shifted(p, len(p), np.float32(0.0))
    ref = np.exp(np.maximum(np.array(x, np.float64), -87.0))
    np.testing.assert_allclose(p, ref, rtol=1e-6, atol=1e-38)


@SETTINGS
@given(
    kv=st.integers(1, 3),
    groups=st.integers(1, 3),
    dh=st.integers(1, 24),
    start=st.integers(0, 40),
    t=st.integers(1, 30),
    window=st.integers(0, 12),
    block=st.integers(1, 17),
    softcap=st.sampled_from([0.0, 0.5, 3.0]),
    seed=st.integers(0, 10**6),
)
def test_attend_tiled_matches_masked_softmax(
    kv, groups, dh, start, t, window, block, softcap, seed
):
    from trueno.llm.model import attend_tiled

    r = rng_for(seed)
    S = start + t
    kc = r.standard_normal((kv, S, dh)).astype(np.float32)
    vc = r.standard_normal((kv, S, dh)).astype(np.float32)
    q = r.standard_normal((t, kv * groups * dh)).astype(np.float32)
    read = []

    def rows(lo, hi):
        read.append((lo, hi))
        return kc[:, lo:hi], vc[:, lo:hi]

    scale = 1 / np.sqrt(dh)
    out = attend_tiled(np, q, rows, start, t, kv, groups, dh, window, scale, block, softcap)
    _assert_chunk_attention(out, q, kc, vc, start, window, scale, groups, softcap)
    lo_any = max(0, start - window + 1) if window else 0
    assert read[0][0] == lo_any and read[-1][1] == S  # keys outside every window never read


@SETTINGS
@given(
    kv=st.integers(1, 3),
    groups=st.integers(1, 5),
    dh=st.sampled_from([4, 8, 16, 24, 48, 64, 256]),
    start=st.integers(0, 300),
    t=st.integers(1, 40),
    window=st.sampled_from([0, 1, 7, 50]),
    block=st.sampled_from([1, 3, 8, 13, 64, 128]),
    qb=st.sampled_from([1, 2, 5, 32]),
    softcap=st.sampled_from([0.0, 3.0]),
    half=st.booleans(),
    level=st.sampled_from(attention.LEVELS),
    seed=st.integers(0, 10**6),
)
def test_attend_chunk_matches_masked_softmax(
    kv, groups, dh, start, t, window, block, qb, softcap, half, level, seed
):
    """Prefill's kernel at every ISA level the host runs (and plain loops), f32 and f16
    caches, tiles and query blocks of any size, against the float64 reference; keys no query
    of the chunk sees (before every window, past the chunk) are NaN: never read."""
    from trueno.llm.prefill_attention import attend_chunk

    r = rng_for(seed)
    S = start + t
    k_in, v_in, kc, vc = _cache_pair(r, kv, S + 3, dh, half)
    lo_any = max(0, start - window + 1) if window else 0
    for a in (k_in, v_in):  # NaN (f16 bits 0x7E00 in a half cache)
        poison = np.uint16(0x7E00) if half else np.float32(np.nan)
        a[:, :lo_any], a[:, S:] = poison, poison
    q = r.standard_normal((t, kv * groups * dh)).astype(np.float32)
    scale = 1 / np.sqrt(dh)
    out = np.full_like(q, np.nan)
    attend_chunk(out, q, k_in, v_in, start, window, scale, groups, softcap, block, qb, level)
    _assert_chunk_attention(out, q, kc, vc, start, window, scale, groups, softcap)


@pytest.mark.parametrize("window", [0, 100])
def test_attend_chunk_over_threads_equals_one_thread(window):
    """The (KV head, query block) tasks spread over numba's threads give the outputs of the
    same tasks run one after another on the calling thread, bit for bit."""
    from trueno.llm import prefill_attention as pa

    r = rng_for(7)
    start, t, kv, groups, dh = 500, 200, 3, 3, 64
    k_in, v_in, _, _ = _cache_pair(r, kv, start + t, dh, True)
    q = r.standard_normal((t, kv * groups * dh)).astype(np.float32)
    outs = [np.empty_like(q), np.empty_like(q)]
    args = (q, k_in, v_in, start, window, 0.125, groups, 0.0, pa.KEY_BLOCK, pa.QUERY_BLOCK,
            attention.LEVEL)  # fmt: skip
    pa._run_tasks(outs[0], *args, 0, 1)
    pa._run_parallel(outs[1], *args)
    np.testing.assert_array_equal(outs[0], outs[1])


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(1, 4),
    kv=st.integers(1, 3),
    groups=st.integers(1, 3),
    dh=st.sampled_from([4, 8, 24, 64]),
    depths=st.lists(st.integers(0, 700), min_size=4, max_size=4),  # past SPLIT_MIN: threads
    window=st.sampled_from([0, 5, 300]),
    half=st.booleans(),
    qk_norm=st.booleans(),
    neox=st.booleans(),
    softcap=st.sampled_from([0.0, 2.0]),
    seed=st.integers(0, 10**6),
)
def test_attention_rows_equals_attention_step_per_row(
    rows, kv, groups, dh, depths, window, half, qk_norm, neox, softcap, seed
):
    """A batched decode step's attention (every row over its own slot, one call) gives each
    row's output and cache entries of attention_step on that row alone, bit for bit."""
    r = rng_for(seed)
    n_slots, ctx, q_dim, kv_dim = 5, 704, kv * groups * dh, kv * dh
    dtype = np.uint16 if half else np.float32
    keys = (3 * r.standard_normal((n_slots, kv, ctx, dh))).astype(np.float32)
    values = r.standard_normal((n_slots, kv, ctx, dh)).astype(np.float32)
    if half:
        keys = keys.astype(np.float16).view(np.uint16)
        values = values.astype(np.float16).view(np.uint16)
    slots = r.permutation(n_slots)[:rows].astype(np.int64)
    positions = np.array(depths[:rows], np.int64)
    qkv = r.standard_normal((rows, q_dim + 2 * kv_dim)).astype(np.float32)
    cos, sin = rope_tables(dh, 10000.0, ctx)
    q_norm = r.uniform(0.5, 1.5, dh).astype(np.float32)
    k_norm = r.uniform(0.5, 1.5, dh).astype(np.float32)
    args = (cos, sin, neox, qk_norm, q_norm, k_norm, 1e-6, window, 1 / np.sqrt(dh), softcap)
    k_ref, v_ref = keys.copy(), values.copy()
    want = np.empty((rows, q_dim), np.float32)
    for b in range(rows):
        row = qkv[b].copy()  # as RunState.qkv: the row's q, k, v as (1, n) views
        q, k, v = row[:q_dim][None], row[q_dim : q_dim + kv_dim][None], row[q_dim + kv_dim :][None]
        pos = int(positions[b])
        kernels.attention_step(want[b : b + 1], q, k, v, k_ref[slots[b]], v_ref[slots[b]], pos,
                               np.array([pos], np.int32), *args[:7], window, args[8],
                               np.zeros(ctx, np.float32), softcap)  # fmt: skip
    out = np.full((rows, q_dim), np.nan, np.float32)
    before = qkv.copy()
    kernels.attention_rows(out, qkv, keys, values, slots, positions, *args)
    assert keys.dtype == dtype
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(keys, k_ref)
    np.testing.assert_array_equal(values, v_ref)
    np.testing.assert_array_equal(qkv, before)


FIRST_CALL = """
import numpy as np
from trueno.llm import attention
rng = np.random.default_rng(0)
k = rng.standard_normal((2, 600, 64)).astype(np.float32)
v = rng.standard_normal((2, 600, 64)).astype(np.float32)
q = rng.standard_normal((4, 64)).astype(np.float32)
out = np.empty_like(q)
attention.attend_gqa(out, q, k, v, 0, 600, 0.125, 2)  # positions split over the threads
print(float(np.abs(out).sum()))
"""


def test_threaded_attention_runs_first_in_a_process_from_the_disk_cache():
    """attend_gqa, a cached kernel that is not parallel itself, hands long spans to a parallel
    one. Loaded from numba's disk cache and called before any parallel kernel ran in the
    process, it crashed (SIGSEGV: numba had not started its thread pool); the module now
    starts it at import. The first run may compile; the second loads from the cache."""
    import subprocess
    import sys

    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", FIRST_CALL], capture_output=True, text=True,
                             timeout=600)  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        assert float(run.stdout) > 0


# +-0, two subnormals, +-inf, a signaling NaN, 1.0
SPECIAL_HALVES = [0x0000, 0x8000, 0x0001, 0x83FF, 0x7C00, 0xFC00, 0x7E01, 0x3C00]


@settings(max_examples=30, deadline=None)
@given(lo=st.integers(0, 40), n=st.integers(0, 24), heads=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))  # fmt: skip
def test_f16_cache_rows_widen_as_numpy(lo, n, heads, seed):
    """KVCache.keys / values of an f16 cache (a context shift's moved keys) widen by
    vcvtph2ps now: bit for bit numpy's float16 -> float32 over every class of half, but that
    a signaling NaN comes out quiet (numpy keeps its bits), NaN either way."""
    from trueno.llm.config import Config

    c = Config(arch="llama", vocab_size=8, dim=8, n_layers=2, n_heads=heads, n_kv_heads=heads,
               head_dim=8, hidden_dim=8, context_length=64, norm_eps=1e-5, rope_base=1e4,
               rope_dim=8, rope_neox=False)  # fmt: skip
    bits = rng_for(seed).integers(0, 1 << 16, size=(2, heads, 64, 8), dtype=np.uint16)
    bits[:, :, :, 0] = np.resize(SPECIAL_HALVES, (2, heads, 64))
    cache = KVCache(c, 64, np, "f16", storage=(bits, bits[::-1].copy()))
    hi = min(64, lo + n)
    for got, src in ((cache.keys(1, lo, hi), bits[1]), (cache.values(1, lo, hi), bits[0])):
        want = src[:, lo:hi].view(np.float16).astype(np.float32)
        assert got.shape == want.shape
        nan = np.isnan(want)
        assert np.array_equal(np.isnan(got), nan)
        assert np.array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan])


def test_bf16_cache_stores_widens_and_shifts_as_the_f32_cache_rounded():
    """A bf16 cache's rows: stored by the narrowing kernel (floats.f32_to_bf16's bits), read
    back exactly as their values, and a context shift rotates the moved keys as the f32 cache
    does, then rounds them once."""
    from trueno.floats import bf16_to_f32, f32_to_bf16
    from trueno.llm.config import Config

    c = Config(arch="llama", vocab_size=8, dim=16, n_layers=2, n_heads=2, n_kv_heads=2,
               head_dim=8, hidden_dim=8, context_length=32, norm_eps=1e-5, rope_base=1e4,
               rope_dim=8, rope_neox=False)  # fmt: skip
    r = rng_for(5)
    k, v = r.standard_normal((2, 20, 16)).astype(np.float32)
    narrow, exact = KVCache(c, 32, np, "bf16"), KVCache(c, 32, np, "f32")
    assert narrow.k.dtype == np.int16 and narrow.nbytes * 2 == exact.nbytes
    for layer in range(2):
        narrow.store(layer, 0, k, v)
        rounded = [bf16_to_f32(f32_to_bf16(x)).reshape(x.shape) for x in (k, v)]
        exact.store(layer, 0, *rounded)
        np.testing.assert_array_equal(narrow.keys(layer, 0, 20), exact.keys(layer, 0, 20))
        np.testing.assert_array_equal(narrow.values(layer, 0, 20), exact.values(layer, 0, 20))
    narrow.n = exact.n = 20
    rope = [rope_tables(8, 1e4, 32)] * 2
    narrow.shift(3, 6, rope, False)
    exact.shift(3, 6, rope, False)
    assert narrow.n == exact.n == 14
    for layer in range(2):
        want = f32_to_bf16(exact.keys(layer, 0, 14)).view(np.int16)
        np.testing.assert_array_equal(narrow.k[layer, :, :14], want)
        np.testing.assert_array_equal(narrow.values(layer, 0, 14), exact.values(layer, 0, 14))
