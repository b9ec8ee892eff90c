"""Long rows kept as column panels (prepared.PANEL_COLS): every product meets the reference,
and the one-vector, B-vector and unchecked forms stay equal bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trueno.quant.prepared as prepared
from trueno import trace
from trueno.quant import dequantize, grouped, prepare, quantize, simd
from trueno.quant.kernels import SIMD_LEVELS, host_levels
from trueno.trace import recorder

pytestmark = pytest.mark.skipif(not simd.available(), reason="SIMD quant kernels unavailable")

K_QUANTS = ["Q4_K", "Q5_K", "Q6_K"]  # the types read in GGML layout (on Zen hosts, avx512 too)
LEVELS = [lvl for lvl in SIMD_LEVELS if lvl in host_levels()]


def _levels_in_ggml_layout(name: str, rows: int) -> list[str]:
    """The host's levels at which a ``name`` weight keeps the GGML layout (not grouped)."""
    return [lvl for lvl in LEVELS if not grouped.applies(name, lvl, (rows, 256))]


def within_int8_bound(y, w, x, block=256):
    """|y - W x| within the error of x rounded to int8 per ``block`` (and f32 sums)."""
    x = x.astype(np.float64)
    amax = np.abs(x).reshape(-1, block).max(axis=1)
    err_x = np.repeat(amax / 254.0, block)
    tol = np.abs(w) @ err_x * 1.001 + 1e-5 * (np.abs(w) @ np.abs(x)) + 1e-6
    return np.all(np.abs(y - w @ x) <= tol)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(K_QUANTS),
    n_blocks=st.integers(2, 7),
    per_panel=st.integers(1, 3),
    rows=st.integers(1, 40),
    n_vec=st.integers(1, 14),
    scale=st.sampled_from([1e-3, 1.0, 40.0]),
    seed=st.integers(0, 2**32 - 1),
    pick=st.integers(0, 7),
)
def test_long_rows_run_as_column_panels(name, n_blocks, per_panel, rows, n_vec, scale, seed,
                                        pick):  # fmt: skip
    levels = _levels_in_ggml_layout(name, rows)
    if not levels:
        pytest.skip(f"{name} is grouped at every level of this host")
    level = levels[pick % len(levels)]
    rng = np.random.default_rng(seed)
    cols = 256 * n_blocks
    blocks = quantize(rng.standard_normal((rows, cols)).astype(np.float32), name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prepared, "PANEL_COLS", 256 * per_panel)
        p = prepare(blocks, name, (rows, cols), isa=level)
    n_panels = -(-n_blocks // per_panel) if n_blocks > per_panel else 0  # 0: one piece
    assert p.panels == n_panels and p.isa == level and p.multi_vector
    assert p.nbytes == blocks.nbytes
    assert (p.blocks is None) == (n_panels > 0)  # the panels are copies
    w = dequantize(blocks, name, (rows, cols)).astype(np.float64)
    assert np.array_equal(p.dequantize(), w.astype(np.float32))
    xs = (rng.standard_normal((n_vec, cols)) * scale).astype(np.float32)
    xs[0, :32] = 0  # a zero activation block
    ys = np.stack([p.matvec(x) for x in xs])
    for x, y in zip(xs, ys, strict=True):
        assert within_int8_bound(y, w, x)
    into = np.full(rows, np.nan, np.float32)
    p.matvec_into(xs[-1], into)  # the weight's own scratch
    assert np.array_equal(into, ys[-1])
    out = np.full((n_vec, rows), np.nan, np.float32)
    assert p.matvecs_into(xs, out)
    assert np.array_equal(out, ys)  # each panel's B-vector kernel, summed in the same order


@pytest.mark.parametrize("name", K_QUANTS)
def test_the_default_bound_splits_an_8b_down_projection(name):
    """Llama-3-8B's FFN down rows (14336 columns) run as two panels of 7168; 8192 columns as
    one piece; the same products as the weight read whole, within the int8 bound of each."""
    levels = _levels_in_ggml_layout(name, 8)
    if not levels:
        pytest.skip(f"{name} is grouped at every level of this host")
    rng = np.random.default_rng(8)
    for cols, n_panels in ((14336, 2), (prepared.PANEL_COLS, 0)):
        blocks = quantize(rng.standard_normal((8, cols)).astype(np.float32), name)
        p = prepare(blocks, name, (8, cols), isa=levels[0])
        assert p.panels == n_panels
        assert p._cuts == (((0, 7168), (7168, 14336)) if n_panels else ())
        whole = prepare(blocks, name, (8, cols), relayout=False, isa=levels[0])
        assert whole.panels == 0 and np.shares_memory(whole.blocks, blocks)  # no copy
        x = rng.standard_normal(cols).astype(np.float32)
        w = dequantize(blocks, name, (8, cols)).astype(np.float64)
        assert within_int8_bound(p.matvec(x), w, x) and within_int8_bound(whole.matvec(x), w, x)


@pytest.mark.parametrize("n", [3, prepared.MATVEC_ROWS + 5])  # matvecs; int8 GEMM or BLAS
@pytest.mark.parametrize("single", [False, True])
def test_panelled_matmul_meets_the_reference(monkeypatch, n, single):
    import contextlib

    levels = _levels_in_ggml_layout("Q4_K", 24)
    if not levels:
        pytest.skip("Q4_K is grouped at every level of this host")
    monkeypatch.setattr(prepared, "PANEL_COLS", 512)
    rng = np.random.default_rng(n)
    rows, cols = 24, 1280  # 5 super-blocks in 3 panels: 1, 2 and 2 of them
    blocks = quantize(rng.standard_normal((rows, cols)).astype(np.float32), "Q4_K")
    p = prepare(blocks, "Q4_K", (rows, cols), isa=levels[-1])
    assert p.panels == 3 and [c1 - c0 for c0, c1 in p._cuts] == [256, 512, 512]
    xs = rng.standard_normal((n, cols)).astype(np.float32)
    with prepared.single_threaded_blas() if single else contextlib.nullcontext():
        got = p.matmul(xs)
    w = dequantize(blocks, "Q4_K", (rows, cols)).astype(np.float64)
    assert got.shape == (n, rows)
    for x, y in zip(xs, got, strict=True):
        assert within_int8_bound(y, w, x)


def test_a_panelled_matvec_is_one_span(monkeypatch):
    levels = _levels_in_ggml_layout("Q6_K", 16)
    if not levels:
        pytest.skip("Q6_K is grouped at every level of this host")
    monkeypatch.setattr(prepared, "PANEL_COLS", 256)
    rng = np.random.default_rng(3)
    blocks = quantize(rng.standard_normal((16, 768)).astype(np.float32), "Q6_K")
    p = prepare(blocks, "Q6_K", (16, 768), isa=levels[0])
    assert p.panels == 3
    x = rng.standard_normal(768).astype(np.float32)
    want = p.matvec(x)
    assert not recorder.ENABLED
    rec = trace.recorder.start(capacity=64)
    try:
        got = p.matvec(x)
    finally:
        trace.recorder.stop()
    spans = [s for s in rec.spans() if s.get("category") != "jit"]
    assert [s["name"] for s in spans] == ["quant.matvec"]
    assert spans[0]["shape"] == [16, 768] and spans[0]["bytes"] == blocks.nbytes
    assert np.array_equal(got, want)
