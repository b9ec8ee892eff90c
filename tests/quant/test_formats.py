"""Every format's numpy reference and numba dequantizer against gguf-py, bit for bit."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from quant_blocks import ALL_TYPES, BLOCK_TYPES, random_blocks

from trueno.gguf.constants import BLOCK_LAYOUT, GGMLType
from trueno.quant import dequantize, get_format
from trueno.quant.base import F16_TO_F32


def gguf_dequantize(blocks: np.ndarray, t: GGMLType) -> np.ndarray:
    qt = gguf.GGMLQuantizationType[t.name]
    if t == GGMLType.F32:
        return blocks.view(np.float32).reshape(-1)
    return gguf.quants.dequantize(blocks, qt).reshape(-1)


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).reshape(-1)


@pytest.mark.parametrize("t", ALL_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("zero", [False, True], ids=["random", "zero"])
def test_dequantize_bit_exact_vs_gguf(rng, t, zero):
    fmt = get_format(t)
    blocks = random_blocks(rng, t, 96)
    if zero:
        blocks[:] = 0
    want = bits(gguf_dequantize(blocks, t))
    assert np.array_equal(bits(fmt.dequantize_ref(blocks)), want)
    out = np.empty((blocks.shape[0], fmt.block_elems), dtype=np.float32)
    fmt.dequantize_numba(blocks, F16_TO_F32, out)
    assert np.array_equal(bits(out), want)


@pytest.mark.parametrize("t", BLOCK_TYPES, ids=lambda t: t.name)
def test_public_dequantize_shapes_both_paths(rng, t):
    elems, nbytes = BLOCK_LAYOUT[t]
    rows, cols = 3, 4 * elems
    blocks = random_blocks(rng, t, rows * 4)
    want = gguf_dequantize(blocks, t).reshape(rows, cols)
    small = dequantize(blocks.reshape(rows, -1), t, (rows, cols))  # numpy reference path
    assert small.shape == (rows, cols) and small.dtype == np.float32
    assert np.array_equal(bits(small), bits(want))
    big_blocks = random_blocks(rng, t, 4096 * 32 // elems)  # large enough for the numba path
    big = dequantize(big_blocks, t, (32, 4096))
    assert np.array_equal(bits(big), bits(gguf_dequantize(big_blocks, t)))


def test_float_inputs_in_their_own_dtype(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    assert np.array_equal(dequantize(x, GGMLType.F32, x.shape), x)
    h = x.astype(np.float16)
    assert np.array_equal(dequantize(h, "F16", x.shape), h.astype(np.float32))
    b = (x.view(np.uint32) >> 16).astype(np.uint16)
    got = dequantize(b, GGMLType.BF16, x.shape)
    assert np.array_equal(got.view(np.uint32), b.astype(np.uint32) << 16)


def test_q8_k_round_trip(rng):
    fmt = get_format(GGMLType.Q8_K)
    x = rng.standard_normal((5, 256)).astype(np.float32)
    blocks = fmt.quantize_ref(x)
    y = fmt.dequantize_ref(blocks)
    d = np.abs(x).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(y - x) <= d * 0.5 + 1e-6)
    bsums = blocks[:, 260:].copy().view(np.int16)
    assert np.array_equal(bsums, blocks[:, 4:260].view(np.int8).reshape(5, 16, 16).sum(-1))
