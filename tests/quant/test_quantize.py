"""Quantizers: legacy formats bit-exact with gguf-py, K-quants bit-exact with llama.cpp's
reference (through the libgguf package) and within their round-trip error bounds."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from trueno.gguf.constants import GGMLType
from trueno.quant import dequantize, quantize

LEGACY = [
    GGMLType.Q4_0,
    GGMLType.Q4_1,
    GGMLType.Q5_0,
    GGMLType.Q5_1,
    GGMLType.Q8_0,
    GGMLType.BF16,
    GGMLType.F16,
]
KQUANTS = [GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K]
# worst |x - dequantize(quantize(x))| relative to the block's max |x|
ROUND_TRIP = {GGMLType.Q4_K: 0.12, GGMLType.Q5_K: 0.06, GGMLType.Q6_K: 0.03}


def sample(rng, rows: int, cols: int) -> np.ndarray:
    x = rng.standard_normal((rows, cols)) * rng.uniform(1e-3, 10, (rows, 1))
    x = x.astype(np.float32)
    x[1] = 0  # an all-zero row
    x[2, : cols // 2] = np.float32(0.5)  # constant blocks
    x[3, ::7] = 0
    return x


@pytest.mark.parametrize("t", LEGACY, ids=lambda t: t.name)
def test_legacy_quantize_bit_exact_vs_gguf(rng, t):
    x = sample(rng, 24, 512)
    got = quantize(x, t)
    want = gguf.quants.quantize(x, gguf.GGMLQuantizationType[t.name])
    assert got.shape == (24, want.view(np.uint8).size // 24)
    assert np.array_equal(got, want.view(np.uint8).reshape(got.shape))


@pytest.mark.parametrize("t", KQUANTS, ids=lambda t: t.name)
def test_kquant_quantize_bit_exact_vs_llama_cpp(rng, t):
    libgguf = pytest.importorskip("libgguf")
    x = sample(rng, 24, 512)
    got = quantize(x, t)
    want = libgguf.quantize_rows(x, getattr(libgguf.GGMLQuantizationType, t.name))
    assert np.array_equal(got, want)


@pytest.mark.parametrize("t", KQUANTS, ids=lambda t: t.name)
def test_kquant_round_trip_error(rng, t):
    x = sample(rng, 16, 1024)
    y = dequantize(quantize(x, t), t, x.shape)
    amax = np.abs(x.reshape(16, -1, 256)).max(axis=-1, keepdims=True)
    err = np.abs((y - x).reshape(16, -1, 256))
    assert np.all(err <= ROUND_TRIP[t] * amax + 1e-7)
    assert np.array_equal(y[1], x[1])  # zeros stay zeros


def test_quantize_keeps_leading_dims(rng):
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    q = quantize(x, GGMLType.Q8_0)
    assert q.shape == (2, 3, 68)
    y = dequantize(q, GGMLType.Q8_0, x.shape)
    assert y.shape == x.shape and np.allclose(y, x, atol=np.abs(x).max() / 127)
