"""The 32-weight types, Q4_K, Q5_K and Q6_K in groups of 16 rows (trueno.quant.grouped): the matvec
against gguf-py and a float64 product within the int8-activation bound; the B-vector kernel
equal to it bit for bit for any B; the dequantize exact; prefill's int8 GEMM equal bit for bit
to the paired layout's (the K-quants: their GGML blocks'); and which weights take the layout."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_prepared import check_int8_activations

from trueno.quant import api, grouped
from trueno.quant.kernels import host_levels
from trueno.quant.prepared import PreparedWeight

pytestmark = pytest.mark.skipif(
    "avx512" not in host_levels(), reason="the grouped layout runs at the avx512 level only"
)


TYPES = list(grouped.TYPES)


@pytest.fixture(autouse=True)
def every_type_grouped(monkeypatch):
    """Every kernel is tested on every host, those this host leaves ungrouped included."""
    monkeypatch.setattr(grouped, "SLOWER_HERE", ())


def block_cols(name: str) -> int:
    return grouped.ACT_BLOCK[name]


def quantized(rng, rows: int, cols: int, scale: float = 1.0, name: str = "Q4_0"):
    if name == "Q3_K":  # no quantizer here: random hmask, qs and scales, a d of about scale
        blocks = rng.integers(0, 256, (rows, cols // 256, 110), dtype=np.uint8)
        d = (rng.uniform(0.5, 1.5, (rows, cols // 256)) * scale / 64).astype(np.float16)
        blocks[..., 108:] = d[..., None].view(np.uint8)
        return blocks.reshape(rows, -1)
    return api.quantize((rng.standard_normal((rows, cols)) * scale).astype(np.float32), name)


def gguf_weights(blocks: np.ndarray, shape, name: str) -> np.ndarray:
    qt = gguf.GGMLQuantizationType[name]
    return gguf.quants.dequantize(blocks.reshape(-1), qt).reshape(shape)


@pytest.mark.parametrize("name", TYPES)
@settings(max_examples=12, deadline=None)
@given(
    groups=st.integers(1, 5),
    n_blocks=st.integers(1, 11),
    scale=st.sampled_from([1e-3, 1.0, 30.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_matvec_matches_gguf_reference(name, groups, n_blocks, scale, seed):
    rng = np.random.default_rng(seed)
    rows, cols = 16 * groups, block_cols(name) * n_blocks
    blocks = quantized(rng, rows, cols, scale, name)
    p = PreparedWeight(blocks, name, (rows, cols))
    assert p.grouped and p.isa == "avx512" and p.nbytes == blocks.nbytes
    x = (rng.standard_normal(cols) * rng.uniform(0.1, 10)).astype(np.float32)
    x[:32] = 0  # an all-zero activation block (scale 0)
    w = gguf_weights(blocks, (rows, cols), name).astype(np.float64)
    check_int8_activations(p.matvec(x), w, x, w @ x.astype(np.float64), grouped.ACT_BLOCK[name])


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("cols", [1, 3, 8])
@pytest.mark.parametrize("rows", [64, 16 * 131])
def test_matvecs_equal_matvec_for_every_batch(name, cols, rows):
    """131 groups: chunks of 8 or 9 groups, each read as grouped.STREAMS runs in step and a
    rest; the B-vector kernel reads one group at a time."""
    rng = np.random.default_rng(cols)
    cols *= block_cols(name)
    p = PreparedWeight(quantized(rng, rows, cols, name=name), name, (rows, cols))
    assert p.grouped
    for n in range(1, 18):  # 8s, then a 4, a 2 and a 1 of the remainder
        xs = rng.standard_normal((n, cols)).astype(np.float32)
        out = np.full((n, rows), np.nan, np.float32)
        assert p.matvecs_into(xs, out)
        for v in range(n):
            assert np.array_equal(out[v], p.matvec(xs[v])), (n, v)


@pytest.mark.parametrize("name", TYPES)
def test_dequantize_is_exact(name):
    rng = np.random.default_rng(5)
    cols = 5 * block_cols(name)
    blocks = quantized(rng, 48, cols, name=name)
    p = PreparedWeight(blocks, name, (48, cols))
    assert p.grouped
    assert np.array_equal(p.dequantize(), gguf_weights(blocks, (48, cols), name))


@pytest.mark.parametrize("name", [t for t in TYPES if t not in grouped.K_ALONE])
@pytest.mark.parametrize("n_tok", [13, 37, 130])
def test_int8_gemm_equals_the_paired_layouts(name, n_tok, monkeypatch):
    """Prefill's GEMM packs its panels from the records: the same unsigned weights and f32
    scales (and mins) as from the paired layout (the K-quants: from their GGML blocks), so the
    same products bit for bit."""
    rng = np.random.default_rng(n_tok)
    rows, cols = 80, 3 * 256
    blocks = quantized(rng, rows, cols, name=name)
    g = PreparedWeight(blocks, name, (rows, cols))
    monkeypatch.setattr(grouped, "ENABLED", False)
    p = PreparedWeight(blocks, name, (rows, cols))
    assert g.grouped and not p.grouped and p.relaid == (name in grouped.LAYOUTS)
    xs = rng.standard_normal((n_tok, cols)).astype(np.float32)
    assert np.array_equal(g.matmul(xs), p.matmul(xs))


def test_which_weights_are_grouped(monkeypatch):
    rng = np.random.default_rng(9)
    q4 = quantized(rng, 32, 64)
    assert PreparedWeight(q4, "Q4_0", (32, 64)).grouped
    assert not PreparedWeight(quantized(rng, 40, 64), "Q4_0", (40, 64)).grouped  # 40 rows
    assert not PreparedWeight(q4, "Q4_0", (32, 64), relayout=False).grouped
    assert not PreparedWeight(q4, "Q4_0", (32, 64), isa="avx2").grouped
    q5 = quantized(rng, 32, 64, name="Q5_0")
    assert PreparedWeight(q5, "Q5_0", (32, 64)).grouped
    k4 = quantized(rng, 32, 256, name="Q4_K")
    assert PreparedWeight(k4, "Q4_K", (32, 256)).grouped
    assert not PreparedWeight(k4, "Q4_K", (32, 256), relayout=False).grouped
    monkeypatch.setattr(grouped, "ENABLED", False)
    assert not PreparedWeight(q4, "Q4_0", (32, 64)).grouped


@pytest.mark.parametrize("name", ["Q4_K", "Q5_K", "Q6_K"])
def test_a_type_slower_here_keeps_its_ggml_layout(name, monkeypatch):
    """A type in SLOWER_HERE (the three K-quants on Zen hosts) takes its ungrouped avx512
    kernel, with the same integer sums: equal to the grouped kernel's result within f32
    rounding; the other types stay grouped."""
    rng = np.random.default_rng(21)
    rows, cols = 48, 512
    blocks = quantized(rng, rows, cols, name=name)
    x = rng.standard_normal(cols).astype(np.float32)
    g = PreparedWeight(blocks, name, (rows, cols))
    monkeypatch.setattr(grouped, "SLOWER_HERE", (name,))
    p = PreparedWeight(blocks, name, (rows, cols))
    assert g.grouped and not p.grouped and p.isa == "avx512" and p.nbytes == blocks.nbytes
    other = "Q5_K" if name == "Q4_K" else "Q4_K"
    assert PreparedWeight(quantized(rng, 32, 256, name=other), other, (32, 256)).grouped
    np.testing.assert_allclose(p.matvec(x), g.matvec(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_tok", [3, 40])
def test_q3_k_has_a_kernel_only_in_groups(n_tok, monkeypatch):
    """Q3_K has no kernel record: grouped at avx512 it keeps its 110 bytes per 256 weights,
    and prefill's int8 GEMM (40 tokens; 3: the B-vector kernel) is within the int8-activation
    bound of the float64 product; below avx512 (or with grouping off) it is dequantized to
    f32 once, as before."""
    from trueno.quant import int8gemm

    rng = np.random.default_rng(13)
    rows, cols = 48, 512
    blocks = quantized(rng, rows, cols, name="Q3_K")
    g = PreparedWeight(blocks, "Q3_K", (rows, cols))
    assert g.grouped and g.backend == "numba-avx512" and g.nbytes == blocks.nbytes
    assert int8gemm.kernel_for(g) is not None
    f = PreparedWeight(blocks, "Q3_K", (rows, cols), isa="avx2")
    assert not f.grouped and f.backend == "numpy" and f.nbytes == 4 * rows * cols
    w = gguf_weights(blocks, (rows, cols), "Q3_K").astype(np.float64)
    xs = rng.standard_normal((n_tok, cols)).astype(np.float32)
    got = g.matmul(xs)
    for t in range(n_tok):
        check_int8_activations(got[t], w, xs[t], w @ xs[t].astype(np.float64), 256)
    want = xs.astype(np.float64) @ w.T
    assert np.allclose(f.matmul(xs), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    monkeypatch.setattr(grouped, "ENABLED", False)
    assert not PreparedWeight(blocks, "Q3_K", (rows, cols)).grouped


@pytest.mark.parametrize("name", ["Q4_K", "Q5_K", "Q6_K"])
def test_k_quant_sums_equal_the_ggml_row_dots(name, monkeypatch):
    """The grouped K-quant kernels sum the GGML row dots' integers (Q4_K, Q5_K: sc * isum
    per sub-block and m * bsum per 16; Q6_K: sc * (isum - 32 * bsum) per 16) from the same Q8_K
    activations: only the f32 order and the one i32 -> f32 rounding of the scaled sums
    differ."""
    rng = np.random.default_rng(11)
    rows, cols = 16 * 70, 4 * 256
    blocks = quantized(rng, rows, cols, name=name)
    g = PreparedWeight(blocks, name, (rows, cols))
    monkeypatch.setattr(grouped, "ENABLED", False)
    p = PreparedWeight(blocks, name, (rows, cols))
    x = rng.standard_normal(cols).astype(np.float32)
    yg, yp = g.matvec(x).astype(np.float64), p.matvec(x).astype(np.float64)
    assert np.allclose(yg, yp, rtol=1e-5, atol=1e-5 * np.abs(yp).max())
