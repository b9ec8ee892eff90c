"""int8 prefill matmul by the row dots (trueno.quant.int8mm.rows_matmul_into): against
gguf-py's dequantize and a float64 matmul within the int8-activation bound of the fused
matvec, and equal bit for bit to T separate matvecs (the same row dots on the same int8
activations)."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_prepared import check_exact, check_int8_activations

from trueno.quant import api, simd
from trueno.quant.prepared import PreparedWeight

pytestmark = pytest.mark.skipif(not simd.available(), reason="AVX2 quant kernels unavailable")

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
K_QUANTS = ("Q4_K", "Q5_K", "Q6_K")  # activations quantized per 256 (Q8_K), else per 32


def gguf_reference(blocks: np.ndarray, name: str, shape, xs: np.ndarray):
    """(w, xs @ w.T) in float64 with w dequantized by gguf-py, the independent reference."""
    qt = gguf.GGMLQuantizationType[name]
    w = gguf.quants.dequantize(blocks.reshape(-1), qt).reshape(shape).astype(np.float64)
    return w, xs.astype(np.float64) @ w.T


def int8_matmul(p: PreparedWeight, xs: np.ndarray, tile_bytes: int | None = None):
    from trueno.quant import int8mm

    out = np.full((xs.shape[0], p.shape[0]), np.nan, np.float32)
    assert int8mm.rows_matmul_into(p, xs, out, tile_bytes)
    return out


@pytest.mark.parametrize("relayout", [True, False], ids=["paired", "ggml"])
@pytest.mark.parametrize("name", TYPES)
@settings(max_examples=6, deadline=None)
@given(
    n_tok=st.integers(1, 40),
    rows=st.integers(1, 37),
    n_blocks=st.integers(1, 9),
    tile_bytes=st.sampled_from([1, 700, 4096, None]),  # 1 row per tile .. all rows in one
    scale=st.sampled_from([1e-3, 1.0, 30.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_int8_matmul_matches_gguf_reference(
    name, relayout, n_tok, rows, n_blocks, tile_bytes, scale, seed
):
    rng = np.random.default_rng(seed)
    block = 256 if name in K_QUANTS else 32
    cols = n_blocks * block
    blocks = api.quantize(rng.standard_normal((rows, cols)).astype(np.float32), name)
    p = PreparedWeight(blocks, name, (rows, cols), relayout=relayout)
    xs = (rng.standard_normal((n_tok, cols)) * scale).astype(np.float32)
    xs[0, :block] = 0  # an all-zero activation block (scale 0)
    got = int8_matmul(p, xs, tile_bytes)
    w, want = gguf_reference(blocks, name, (rows, cols), xs)
    for t in range(n_tok):
        check_int8_activations(got[t], w, xs[t], want[t], block)
    assert np.array_equal(got, np.stack([p.matvec(x) for x in xs]))


@pytest.mark.parametrize("name", TYPES)
def test_int8_matmul_equals_separate_matvecs(name):
    rng = np.random.default_rng(3)
    rows, cols = 300, 1024  # several tiles at the default tile size; 2 threads share them
    blocks = api.quantize(rng.standard_normal((rows, cols)).astype(np.float32), name)
    p = PreparedWeight(blocks, name, (rows, cols))
    xs = rng.standard_normal((33, cols)).astype(np.float32)
    got = int8_matmul(p, xs)
    assert np.array_equal(got, np.stack([p.matvec(x) for x in xs]))


@pytest.mark.parametrize("name", ["Q4_0", "Q6_K", "F16"])
def test_matmul_hook_follows_the_token_range(name, monkeypatch):
    from trueno.quant import int8mm

    rng = np.random.default_rng(4)
    rows, cols = 24, 512
    blocks = api.quantize(rng.standard_normal((rows, cols)).astype(np.float32), name)
    p = PreparedWeight(blocks, name, (rows, cols))
    w, _ = gguf_reference(blocks, name, (rows, cols), np.zeros((1, cols), np.float32))
    monkeypatch.setattr(int8mm, "GEMM", False)  # the row dots' rules (int8gemm: test_int8gemm)
    monkeypatch.setitem(int8mm.TOKEN_RANGE, name, (16, 20))
    monkeypatch.setattr(int8mm, "MIN_WEIGHT_ELEMS", rows * cols)
    for n_tok in (15, 16, 20, 21):
        xs = rng.standard_normal((n_tok, cols)).astype(np.float32)
        got = p.matmul(xs)
        want = xs.astype(np.float64) @ w.T
        int8 = name != "F16" and 16 <= n_tok <= 20
        assert int8mm.wanted(p, n_tok) == int8
        for t in range(n_tok):
            if int8:
                assert np.array_equal(got[t], p.matvec(xs[t]))
            else:  # dequantize + sgemm: f32 products, no int8 rounding of the activations
                check_exact(got[t], w, xs[t], want[t])
    monkeypatch.setattr(int8mm, "MIN_WEIGHT_ELEMS", rows * cols + 1)
    assert not int8mm.wanted(p, 16)
    monkeypatch.setattr(int8mm, "MIN_WEIGHT_ELEMS", rows * cols)
    assert int8mm.wanted(p, 16) == (name != "F16")
    monkeypatch.setattr(int8mm, "ENABLED", False)
    assert not int8mm.wanted(p, 16)


def test_no_int8_kernel_for_float_weights():
    from trueno.quant import int8mm

    w = np.random.default_rng(5).standard_normal((8, 64)).astype(np.float16)
    p = PreparedWeight(w.view(np.uint8).reshape(8, -1), "F16", (8, 64))
    xs = np.ones((16, 64), np.float32)
    assert not int8mm.matmul_into(p, xs, np.empty((16, 8), np.float32))
    assert not int8mm.wanted(p, 16)


def test_tile_rows():
    from trueno.quant import int8mm

    assert int8mm.tile_rows(1152, 16 << 10) == 14
    assert int8mm.tile_rows(1 << 20, 16 << 10) == 1
    assert int8mm.tile_rows(0) >= 1
