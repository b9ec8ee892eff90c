"""Activation quantization used by the AVX2 kernels."""

from __future__ import annotations

import numpy as np
import pytest

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
