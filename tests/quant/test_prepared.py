"""Fused matvec (AVX2 and portable paths) and tiled matmul against an f64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quant_blocks import random_blocks

from trueno import trace
from trueno.gguf.constants import BLOCK_LAYOUT, GGMLType
from trueno.quant import dequantize, matvec, prepare, quantize, simd
from trueno.quant.prepared import MATVEC_ROWS
from trueno.trace import recorder

QUANTIZABLE = [
    GGMLType.Q4_0,
    GGMLType.Q4_1,
    GGMLType.Q5_0,
    GGMLType.Q5_1,
    GGMLType.Q8_0,
    GGMLType.Q4_K,
    GGMLType.Q5_K,
    GGMLType.Q6_K,
    GGMLType.F16,
    GGMLType.BF16,
    GGMLType.F32,
]
FALLBACK = [GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.IQ4_NL, GGMLType.IQ4_XS]
ACT_BLOCK = {GGMLType.Q4_K: 256, GGMLType.Q5_K: 256, GGMLType.Q6_K: 256}
needs_avx2 = pytest.mark.skipif(
    not simd.available(), reason="no AVX2/FMA/F16C or TRUENO_QUANT_SIMD=0"
)


def weights(rng, t: GGMLType, rows: int, cols: int) -> np.ndarray:
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    return quantize(w, t)


def reference(blocks, t, shape, x):
    w = dequantize(blocks, t, shape).astype(np.float64)
    return w, w @ x.astype(np.float64)


def check_exact(y, w, x, want):
    """f32 accumulation of the exact products: relative to sum |w| |x|."""
    tol = 1e-5 * (np.abs(w) @ np.abs(x.astype(np.float64))) + 1e-6
    assert np.all(np.abs(y - want) <= tol)


def check_int8_activations(y, w, x, want, block):
    """x rounded to int8 with one scale per block: |x - x~| <= max|x_block| / 254 per element."""
    amax = np.abs(x.astype(np.float64)).reshape(-1, block).max(axis=1)
    err_x = np.repeat(amax / 254.0, block)
    tol = np.abs(w) @ err_x * 1.001 + 1e-5 * (np.abs(w) @ np.abs(x)) + 1e-6
    assert np.all(np.abs(y - want) <= tol)


@pytest.mark.parametrize("t", QUANTIZABLE, ids=lambda t: t.name)
@pytest.mark.parametrize("path", ["portable", pytest.param("avx2", marks=needs_avx2)])
@settings(max_examples=8)
@given(rows=st.integers(1, 40), n_blocks=st.integers(1, 21), seed=st.integers(0, 2**32 - 1))
def test_matvec_matches_f64_reference(t, path, rows, n_blocks, seed):
    rng = np.random.default_rng(seed)
    cols = n_blocks * (256 if t in ACT_BLOCK else 32)  # odd block counts exercise the tails
    blocks = weights(rng, t, rows, cols)
    x = (rng.standard_normal(cols) * rng.uniform(0.1, 10)).astype(np.float32)
    p = prepare(blocks, t, (rows, cols), simd=(path == "avx2"))
    y = p.matvec(x)
    assert y.shape == (rows,) and y.dtype == np.float32
    w, want = reference(blocks, t, (rows, cols), x)
    if p.backend.startswith("numba-") and t not in (GGMLType.F16, GGMLType.BF16):
        check_int8_activations(y, w, x, want, ACT_BLOCK.get(t, 32))
    else:
        check_exact(y, w, x, want)


@needs_avx2
@pytest.mark.parametrize("t", QUANTIZABLE, ids=lambda t: t.name)
def test_one_off_matvec_reads_ggml_layout(rng, t):
    rows, cols = 9, 32 * 24 if t not in ACT_BLOCK else 768
    blocks = weights(rng, t, rows, cols)
    x = rng.standard_normal(cols).astype(np.float32)
    p = prepare(blocks, t, (rows, cols), relayout=False)
    assert not p.relaid and (p.blocks is not None or t == GGMLType.F32)
    y = matvec(blocks, t, (rows, cols), x)
    assert np.array_equal(y, p.matvec(x))
    w, want = reference(blocks, t, (rows, cols), x)
    if p.backend.startswith("numba-") and t not in (GGMLType.F16, GGMLType.BF16):
        check_int8_activations(y, w, x, want, ACT_BLOCK.get(t, 32))
    else:
        check_exact(y, w, x, want)
    if t.name in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"):
        paired = prepare(blocks, t, (rows, cols))
        assert paired.relaid and paired.blocks is None and paired.nbytes == blocks.nbytes
        assert np.allclose(paired.matvec(x), y, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("t", FALLBACK, ids=lambda t: t.name)
def test_fallback_types_dequantize_then_blas(rng, t):
    elems, _ = BLOCK_LAYOUT[t]
    rows, cols = 7, 512
    blocks = random_blocks(rng, t, rows * cols // elems).reshape(rows, -1)
    p = prepare(blocks, t, (rows, cols))
    assert p.backend == "numpy" and p.nbytes == rows * cols * 4
    x = rng.standard_normal(cols).astype(np.float32)
    w, want = reference(blocks, t, (rows, cols), x)
    check_exact(p.matvec(x), w, x, want)
    check_exact(matvec(blocks, t, (rows, cols), x), w, x, want)


@pytest.mark.parametrize(
    "t",
    [GGMLType.Q4_0, GGMLType.Q5_1, GGMLType.Q6_K, GGMLType.F16, GGMLType.Q2_K],
    ids=lambda t: t.name,
)
@pytest.mark.parametrize("n", [1, 2, MATVEC_ROWS, MATVEC_ROWS + 3])  # matvecs / BLAS
@pytest.mark.parametrize("blas_threads", ["any", "single"])
def test_matmul_matches_reference(rng, t, n, blas_threads, monkeypatch):
    import contextlib

    import trueno.quant.prepared as prepared
    from trueno.quant import int8mm

    monkeypatch.setattr(prepared, "MATMUL_TILE_BYTES", 3 * 512 * 4)  # 3-row tiles
    rows, cols = 10, 512
    if t == GGMLType.Q2_K:
        blocks = random_blocks(rng, t, rows * 2).reshape(rows, -1)
    else:
        blocks = weights(rng, t, rows, cols)
    xs = rng.standard_normal((n, cols)).astype(np.float32)
    p = prepare(blocks, t, (rows, cols))
    single = blas_threads == "single"
    with prepared.single_threaded_blas() if single else contextlib.nullcontext():
        # single: each of our threads dequantizes its own tiles and calls BLAS on them
        assert prepared._blas_is_single_threaded() or not single or not prepared._blas_libs()
        got = p.matmul(xs)
    assert got.shape == (n, rows)
    w = dequantize(blocks, t, (rows, cols)).astype(np.float64)
    want = xs.astype(np.float64) @ w.T
    block = ACT_BLOCK.get(t, 32)
    int8 = n <= MATVEC_ROWS or int8mm.wanted(p, n)  # matvecs, or the int8 prefill GEMM
    for i in range(n):
        if p.backend.startswith("numba-") and int8 and t != GGMLType.F16:
            check_int8_activations(got[i], w, xs[i], want[i], block)
        else:
            check_exact(got[i], w, xs[i], want[i])
    assert np.array_equal(p.dequantize(), w.astype(np.float32))


def test_env_switch_forces_portable(rng, monkeypatch):
    blocks = weights(rng, GGMLType.Q8_0, 4, 64)
    monkeypatch.setenv("TRUENO_QUANT_SIMD", "0")
    assert not simd.available()
    assert prepare(blocks, GGMLType.Q8_0, (4, 64)).backend == "numba"
    monkeypatch.setenv("TRUENO_QUANT_SIMD", "1")
    assert simd.available() == simd.cpu_has_avx2()


def test_matvec_records_a_span_only_when_tracing(rng):
    blocks = weights(rng, GGMLType.Q4_0, 8, 64)
    p = prepare(blocks, GGMLType.Q4_0, (8, 64))
    x = rng.standard_normal(64).astype(np.float32)
    assert not recorder.ENABLED
    rec = trace.recorder.start(capacity=64)
    try:
        p.matvec(x)
        p.matmul(np.stack([x] * (MATVEC_ROWS + 1)))  # the dequantize + BLAS path
    finally:
        trace.recorder.stop()
    # a first call may also load its kernel from numba's cache: a span of category "jit"
    spans = [s for s in rec.spans() if s.get("category") != "jit"]
    assert [s["name"] for s in spans] == ["quant.matvec", "quant.matmul"]
    assert spans[0]["backend"] == p.backend and spans[0]["shape"] == [8, 64]
    assert spans[0]["dtype"] == "Q4_0" and spans[0]["flops"] == 2 * 8 * 64
    assert spans[1]["shape"] == [MATVEC_ROWS + 1, 8, 64]
    recorded = rec.count
    p.matvec(x)  # tracing off again: nothing recorded
    assert rec.count == recorded


@pytest.mark.parametrize(
    "t",
    [GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.F16, GGMLType.Q2_K],
    ids=lambda t: t.name,
)
@pytest.mark.parametrize("rows, cols", [(0, 256), (3, 0)])
def test_empty_weights(t, rows, cols):
    from trueno.quant.base import get_format, row_bytes

    blocks = np.zeros((rows, row_bytes(get_format(t), cols)), np.uint8)
    for path in (None, False):
        p = prepare(blocks, t, (rows, cols), simd=path)
        assert p.matvec(np.ones(cols, np.float32)).shape == (rows,)
        y = p.matmul(np.ones((4, cols), np.float32))
        assert y.shape == (4, rows) and not y.any()
        assert p.dequantize().shape == (rows, cols)


@pytest.mark.parametrize("t", QUANTIZABLE + FALLBACK[:1], ids=lambda t: t.name)
@pytest.mark.parametrize("relayout", [True, False])
def test_matvec_into_equals_matvec(rng, t, relayout):
    rows, cols = 37, 32 * 24 if t not in ACT_BLOCK else 768
    if t in FALLBACK:
        elems, _ = BLOCK_LAYOUT[t]
        blocks = random_blocks(rng, t, rows * cols // elems).reshape(rows, -1)
    else:
        blocks = weights(rng, t, rows, cols)
    p = prepare(blocks, t, (rows, cols), relayout=relayout)
    for _ in range(2):  # the weight's own scratch is reused
        x = rng.standard_normal(cols).astype(np.float32)
        out = np.full(rows, np.nan, np.float32)
        p.matvec_into(x, out)
        assert np.array_equal(out, p.matvec(x))


def test_matmul_f32_splits_rows_under_single_threaded_blas(rng):
    from trueno.quant.prepared import matmul_f32, single_threaded_blas

    xs = rng.standard_normal((7, 96)).astype(np.float32)
    w = rng.standard_normal((301, 96)).astype(np.float32)
    want = xs.astype(np.float64) @ w.T.astype(np.float64)
    with single_threaded_blas():
        got = matmul_f32(xs, w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(matmul_f32(xs, w), want, rtol=1e-5, atol=1e-4)


@needs_avx2
@pytest.mark.parametrize("t", [t for t in QUANTIZABLE if t is not GGMLType.F32], ids=str)
def test_rows_past_the_prefetch_bound(rng, t):
    """Rows longer than fused.PREFETCH_MAX_ROW_BYTES run without the software prefetch: the
    matvec still meets the reference, and the B-vector driver still equals it row for row."""
    from trueno.quant import fused

    elems, nbytes = BLOCK_LAYOUT[t]
    step = 256 if t in ACT_BLOCK else 32
    cols = (fused.PREFETCH_MAX_ROW_BYTES // nbytes * elems // step + 1) * step
    rows = fused.PREFETCH_ROWS + 9  # rows with rows ahead of them, and the last ones without
    blocks = weights(rng, t, rows, cols)
    p = prepare(blocks, t, (rows, cols), relayout=False)
    assert p.backend.startswith("numba-") and p.blocks.strides[0] > fused.PREFETCH_MAX_ROW_BYTES
    x = (rng.standard_normal(cols) * 3).astype(np.float32)
    y = p.matvec(x)
    w, want = reference(blocks, t, (rows, cols), x)
    if t in (GGMLType.F16, GGMLType.BF16):
        check_exact(y, w, x, want)
    else:
        check_int8_activations(y, w, x, want, ACT_BLOCK.get(t, 32))
    xs = (rng.standard_normal((11, cols)) * 3).astype(np.float32)
    out = np.empty((11, rows), np.float32)
    assert p.matvecs_into(xs, out)
    for b in range(11):
        assert np.array_equal(out[b], p.matvec(xs[b]))
