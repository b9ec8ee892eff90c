"""The paired / split-scale layouts hold exactly the GGML bytes, rearranged."""

from __future__ import annotations

import numpy as np
import pytest

from trueno.gguf.constants import GGMLType
from trueno.quant import quantize
from trueno.quant.kernels import RECORDS
from trueno.quant.prepared import MATVEC_ROWS
from trueno.quant.relayout import pair_blocks, to_blocks

RELAID = [t.name for t, rec in RECORDS.items() if rec.relayout is not None]


@pytest.mark.parametrize("name", RELAID)
@pytest.mark.parametrize("n_blocks", [1, 2, 3, 8, 9, 21])
def test_pair_blocks_round_trip(rng, name, n_blocks):
    w = rng.standard_normal((5, 32 * n_blocks)).astype(np.float32)
    blocks = quantize(w, GGMLType[name])
    paired = pair_blocks(blocks, name)
    assert paired.nbytes == blocks.nbytes
    assert np.array_equal(to_blocks(paired, name).reshape(blocks.shape), blocks)
    assert np.array_equal(to_blocks(paired, name, 2, 4).reshape(2, -1), blocks[2:4])


@pytest.mark.parametrize("name", RELAID)
def test_dequantize_paired_bit_exact(rng, name, monkeypatch):
    from trueno.quant import dequantize, int8mm, prepare

    rows, cols = 400, 32 * 21  # odd block count, big enough for the threaded split
    blocks = quantize(rng.standard_normal((rows, cols)).astype(np.float32), GGMLType[name])
    p = prepare(blocks, name, (rows, cols))
    want = dequantize(blocks, name, (rows, cols))
    assert np.array_equal(p.dequantize().view(np.uint32), want.view(np.uint32))
    xs = rng.standard_normal((MATVEC_ROWS + 1, cols)).astype(np.float32)
    ref = xs @ want.T
    with monkeypatch.context() as m:  # dequantize + BLAS: the f32 products of the same weights
        m.setattr(int8mm, "ENABLED", False)
        assert np.allclose(p.matmul(xs), ref, rtol=1e-4, atol=1e-3)
    got = p.matmul(xs)
    if int8mm.wanted(p, xs.shape[0]):
        # the int8 prefill GEMM (activations quantized per 32, as the matvec): relative to
        # the output's scale, inside the matvec's int8 bound
        assert np.abs(got - ref).max() <= 2e-2 * np.abs(ref).max()
    else:  # only Q8_0 at avx2 has no GEMM (vpmaddubsw would saturate): dequantize + BLAS
        assert (name, p.isa) == ("Q8_0", "avx2")
        assert np.allclose(got, ref, rtol=1e-4, atol=1e-3)


def test_types_without_relaid_form_refused(rng):
    from trueno.errors import UnsupportedError

    assert RELAID == ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
    blocks = quantize(rng.standard_normal((2, 256)).astype(np.float32), GGMLType.Q4_K)
    with pytest.raises(UnsupportedError, match="Q4_K has no re-laid form"):
        pair_blocks(blocks, "Q4_K")


@pytest.mark.parametrize("scale", [0.01, 1.0, 300.0])
def test_dequantize_q6_k_bit_exact(rng, scale):
    from quant_blocks import random_blocks

    from trueno.quant.base import F16_TO_F32
    from trueno.quant.q6_k import dequantize_ref
    from trueno.quant.relayout import dequantize_q6_k

    w = (rng.standard_normal((5, 512)) * scale).astype(np.float32)
    quantized = quantize(w, GGMLType.Q6_K).reshape(-1, 210)
    for blocks in (quantized, random_blocks(rng, GGMLType.Q6_K, 9)):
        out = np.empty((blocks.shape[0], 256), np.float32)
        dequantize_q6_k(blocks, F16_TO_F32, out)
        want = dequantize_ref(blocks)
        assert np.array_equal(out, want, equal_nan=True)
