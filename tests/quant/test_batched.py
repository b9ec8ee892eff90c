"""Batched fused matvecs (trueno.quant.batched) equal the one-vector matvec bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trueno.quant import api, simd
from trueno.quant.prepared import PreparedWeight

pytestmark = pytest.mark.skipif(not simd.available(), reason="AVX2 quant kernels unavailable")

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
_weights: dict = {}


def weight(name: str, relayout: bool, rows: int = 40, cols: int = 512) -> PreparedWeight:
    key = (name, relayout)
    if key not in _weights:
        w = np.random.default_rng(1).standard_normal((rows, cols)).astype(np.float32)
        blocks = api.quantize(w, name)
        _weights[key] = PreparedWeight(blocks, name, (rows, cols), relayout=relayout)
    return _weights[key]


@pytest.mark.parametrize("relayout", [True, False])
@pytest.mark.parametrize("name", TYPES)
def test_batched_equals_matvec_per_row(name, relayout):
    from trueno.quant import batched

    p = weight(name, relayout)
    xs = np.random.default_rng(2).standard_normal((5, p.shape[1])).astype(np.float32)
    out = np.empty((5, p.shape[0]), np.float32)
    assert batched.matvecs_into(p, xs, out)
    for b in range(5):
        assert np.array_equal(out[b], p.matvec(xs[b]))


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(["Q4_1", "Q4_K", "Q8_0"]),
    n_vec=st.integers(1, 16),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 50.0]),
)
def test_batched_any_batch(name, n_vec, seed, scale):
    from trueno.quant import batched

    p = weight(name, True)
    xs = (np.random.default_rng(seed).standard_normal((n_vec, p.shape[1])) * scale).astype(
        np.float32
    )
    xs[0, :32] = 0  # a zero activation block
    out = np.empty((n_vec, p.shape[0]), np.float32)
    assert batched.matvecs_into(p, xs, out)
    assert np.array_equal(out, np.stack([p.matvec(x) for x in xs]))


def test_no_kernel_for_float_weights():
    from trueno.quant import batched

    w = np.ones((4, 32), np.float32)
    p = PreparedWeight(api.quantize(w, "F16"), "F16", (4, 32))
    assert not batched.matvecs_into(p, np.ones((2, 32), np.float32), np.empty((2, 4), np.float32))
