"""The paired / split-scale layouts hold exactly the GGML bytes, rearranged."""

from __future__ import annotations

import numpy as np
import pytest

from trueno.gguf.constants import GGMLType
from trueno.quant import quantize
from trueno.quant.relayout import LAYOUTS, pair_blocks, to_blocks


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("n_blocks", [1, 2, 3, 8, 9, 21])
def test_pair_blocks_round_trip(rng, name, n_blocks):
    w = rng.standard_normal((5, 32 * n_blocks)).astype(np.float32)
    blocks = quantize(w, GGMLType[name])
    paired = pair_blocks(blocks, name)
    assert paired.nbytes == blocks.nbytes
    assert np.array_equal(to_blocks(paired, name).reshape(blocks.shape), blocks)
    assert np.array_equal(to_blocks(paired, name, 2, 4).reshape(2, -1), blocks[2:4])


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_dequantize_paired_bit_exact(rng, name):
    from trueno.quant import dequantize, prepare

    rows, cols = 400, 32 * 21  # odd block count, big enough for the threaded split
    blocks = quantize(rng.standard_normal((rows, cols)).astype(np.float32), GGMLType[name])
    p = prepare(blocks, name, (rows, cols))
    want = dequantize(blocks, name, (rows, cols))
    assert np.array_equal(p.dequantize().view(np.uint32), want.view(np.uint32))
    xs = rng.standard_normal((3, cols)).astype(np.float32)
    assert np.allclose(p.matmul(xs), xs @ want.T, rtol=1e-4, atol=1e-3)
