"""Activation quantization used by the AVX2 kernels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trueno.quant import simd

pytestmark = pytest.mark.skipif(not simd.cpu_has_avx2(), reason="CPU lacks AVX2/FMA/F16C")


@pytest.mark.parametrize("block", [32, 256])
def test_quantize_activations(rng, block):
    from trueno.quant.fused import activation_buffers, quantize_activations

    x = (rng.standard_normal(512) * 3).astype(np.float32)
    x[:block] = 0  # an all-zero block gets scale 0
    xq, dx, xs, bs = activation_buffers(x.size, block)
    quantize_activations(x, block, xq, dx, xs, bs)
    d = np.repeat(dx, block)
    assert dx[0] == 0 and not xq[:block].any()
    assert np.all(np.abs(xq * d - x) <= d / 2 * 1.0001)
    assert np.abs(xq).max() <= 127
    assert np.array_equal(bs, xq.reshape(-1, 16).astype(np.int16).sum(1))
    assert np.allclose(xs, np.repeat(dx, block // 32) * bs.reshape(-1, 2).sum(1))


def _reference(x, block):
    """llama.cpp's quantize_row_q8_0 in float32 numpy: d = max|x| / 127, q = rint(x / d)."""
    blocks = x.reshape(-1, block)
    amax = np.abs(blocks).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    inv = np.zeros_like(d)
    inv[d > 0] = np.float32(1) / d[d > 0]
    q = np.rint(blocks * inv[:, None]).astype(np.int8).ravel()
    return d, q


@settings(max_examples=60, deadline=None)
@given(
    block=st.sampled_from([32, 256]),
    blocks=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-30, 1e-3, 1.0, 3e4]),
)
def test_quantize_activations_exact(block, blocks, seed, scale):
    """Bit for bit llama.cpp's rounding: tiny scales, negative zeros, zero blocks and a block's
    largest value negative included."""
    from trueno.quant.fused import new_buffers, quantize_activations

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(block * blocks) * scale).astype(np.float32)
    x[rng.integers(0, x.size, 3)] = np.float32(-0.0)
    x[: block // 2] = 0.0 if seed % 3 == 0 else x[: block // 2]  # a half (or whole) zero block
    j = int(rng.integers(0, x.size))
    x[j] = -np.abs(x).max() * np.float32(1.5)
    xq, dx, xs, bs = new_buffers(x.size, block)
    quantize_activations(x, block, xq, dx, xs, bs)
    d, q = _reference(x, block)
    assert np.array_equal(dx, d) and np.array_equal(xq, q)
    sums = xq.reshape(-1, 16).astype(np.int32).sum(1)
    assert np.array_equal(bs, sums.astype(np.int16))
    per32 = np.repeat(dx, block // 32) * sums.reshape(-1, 2).sum(1).astype(np.float32)
    assert np.array_equal(xs, per32.astype(np.float32))


def test_a_nan_activation_reaches_the_output():
    """A NaN gives its block a NaN scale, so the dot is NaN: the float max the loop form
    took dropped it (a finite scale, the NaN's int8 garbage summed in)."""
    from trueno.quant import api
    from trueno.quant.fused import new_buffers, quantize_activations
    from trueno.quant.prepared import PreparedWeight

    x = np.ones(64, np.float32)
    x[3] = np.nan
    xq, dx, xs, bs = new_buffers(x.size, 32)
    quantize_activations(x, 32, xq, dx, xs, bs)
    assert np.isnan(dx[0]) and np.isnan(xs[0]) and dx[1] == np.float32(1) / np.float32(127)
    w = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    p = PreparedWeight(api.quantize(w, "Q8_0"), "Q8_0", (4, 64))
    assert np.isnan(p.matvec(x)).all()
