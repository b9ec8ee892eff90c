"""B-vector matvecs (PreparedWeight.matvecs_into) equal the one-vector matvec bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trueno.gguf.constants import GGMLType
from trueno.quant import api, simd
from trueno.quant.kernels import RECORDS, SIMD_LEVELS, host_levels
from trueno.quant.prepared import PreparedWeight

pytestmark = pytest.mark.skipif(not simd.available(), reason="SIMD quant kernels unavailable")

TYPES = [t.name for t in RECORDS]  # every fused type, F16 and BF16 included
_weights: dict = {}


def weight(
    name: str, relayout: bool, rows: int = 40, cols: int = 512, isa: str | None = None
) -> PreparedWeight:
    key = (name, relayout, rows, cols, isa)
    if key not in _weights:
        w = np.random.default_rng(1).standard_normal((rows, cols)).astype(np.float32)
        blocks = api.quantize(w, name)
        _weights[key] = PreparedWeight(blocks, name, (rows, cols), relayout=relayout, isa=isa)
    return _weights[key]


# every SIMD level this host runs (the lane-per-block bodies differ per level: VNNI's w + 128
# for Q8_0, 8 vectors per decode at avx512, 4 below); the levels it lacks are reported skipped
LEVELS = [
    pytest.param(
        lvl, marks=pytest.mark.skipif(lvl not in host_levels(), reason=f"host lacks {lvl}")
    )
    for lvl in SIMD_LEVELS
]


# columns per row: whole groups of 8 blocks only (512); + one step of 4 (640, the DRAM bench's
# shape); + 4 + an odd block (928); 3 blocks left over (864); no whole group (160)
COLS = [512, 640, 928, 864, 160]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("cols", COLS)
@pytest.mark.parametrize("relayout", [True, False])
@pytest.mark.parametrize("name", TYPES)
def test_batched_equals_matvec_per_row(name, relayout, cols, level):
    rec = RECORDS[GGMLType[name]]
    if cols % rec.layout[0]:
        if cols in (864, 160):
            pytest.skip("the K-quants take whole super-blocks: 512 and 640 -> 768 cover them")
        cols = 768
    if rec.best_level(level, relayout and rec.relayout is not None) != level:
        pytest.skip(f"{name} has no {level} kernel")
    p = weight(name, relayout, cols=cols, isa=level)
    assert p.isa == level
    assert p.multi_vector and p.relaid == (relayout and RECORDS[p.ggml_type].relayout is not None)
    # 11, 13, 14 vectors: 8 + 3, 8 + 4 + 1, 8 + 4 + 2 (4 + 4 + 3, 4 + 4 + 4 + 1, 4 + 4 + 4 + 2
    # below avx512): every decode size of the driver, and one vector alone
    for n_vec in (11, 13, 14):
        xs = np.random.default_rng(n_vec).standard_normal((n_vec, p.shape[1]))
        xs = xs.astype(np.float32)
        out = np.empty((n_vec, p.shape[0]), np.float32)
        assert p.matvecs_into(xs, out)
        for b in range(n_vec):
            assert np.array_equal(out[b], p.matvec(xs[b]))


@pytest.mark.skipif("avx512" not in host_levels(), reason="host lacks avx512")
@pytest.mark.parametrize(
    ("name", "cols", "relayout"),
    [(t, c, True) for t in ("Q4_0", "Q4_1") for c in (64, 128, 192, 384, 512, 576, 640, 704, 1152)]
    + [("Q4_K", c, True) for c in (256, 768, 1280)]
    + [("Q8_0", c, r) for r in (True, False) for c in (32, 64, 160, 256, 576, 640, 928)],
)
def test_two_row_form_equals_matvec(name, cols, relayout):
    """The two-rows-per-register form (row_pairs.py, avx512): an odd row count (a run of rows
    ends on one row alone); Q4_0 / Q4_1 with 2 blocks per row (a last pair alone), 4 (a step of
    4 alone), 6 (4 and a pair), 12, 16, 20 and 36 (groups of 8, with and without a step of 4),
    18 (SmolLM2's 576 columns: groups and a pair) and 22 (groups, 4 and a pair); Q4_K with 1, 3
    and 5 super-blocks; Q8_0 split (groups of 8, a step of 4, single blocks) and on GGML
    blocks (a tied output head: 4 blocks per step, the rest one by one)."""
    p = weight(name, relayout, rows=71, cols=cols, isa="avx512")
    kind = f"{name}/{'relaid' if p.relaid else 'ggml'}/avx512"
    assert simd.body_of(kind).twin_rows is not None
    rng = np.random.default_rng(cols)
    xs = rng.standard_normal((13, cols)).astype(np.float32)  # a group of 8, one of 4, one
    xs[1, :32] = 0  # a zero activation block
    xs[2] *= 1e-3
    xs[9, 5] = 1e4  # one large activation: the others quantize to small integers
    out = np.empty((13, p.shape[0]), np.float32)
    assert p.matvecs_into(xs, out)
    for b in range(13):
        assert np.array_equal(out[b], p.matvec(xs[b]))


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(["Q4_0", "Q4_1", "Q5_0", "Q4_K", "Q8_0", "BF16"]),
    n_vec=st.integers(1, 16),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 50.0]),
)
def test_batched_any_batch(name, n_vec, seed, scale):
    p = weight(name, True, cols=768 if name.endswith("_K") else 928)
    xs = (np.random.default_rng(seed).standard_normal((n_vec, p.shape[1])) * scale).astype(
        np.float32
    )
    xs[0, :32] = 0  # a zero activation block
    out = np.empty((n_vec, p.shape[0]), np.float32)
    assert p.matvecs_into(xs, out)
    assert np.array_equal(out, np.stack([p.matvec(x) for x in xs]))


def test_no_kernel_for_f32_or_portable_weights():
    w = np.ones((4, 32), np.float32)
    for p in (
        PreparedWeight(w, "F32", (4, 32)),
        PreparedWeight(api.quantize(w, "Q4_0"), "Q4_0", (4, 32), simd=False),
    ):
        assert not p.multi_vector
        out = np.full((2, 4), np.nan, np.float32)
        assert not p.matvecs_into(np.ones((2, 32), np.float32), out)
        assert np.isnan(out).all()  # nothing done


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("cols", [768, 4352])  # up to fused.PLAIN_COLS, and past it
@pytest.mark.parametrize("name", ["Q4_K", "Q5_K", "Q6_K", "Q8_0", "Q4_0"])
def test_small_batches_equal_matvec(name, cols, level):
    """B = 2 to 7, fewer than a decode group: at avx512 the lane-per-block bodies run their
    plain multi-vector form in decodes of up to fused.PLAIN_UPTO on rows of up to
    fused.PLAIN_COLS, past it the lane-per-block one; every row equals the matvec's bits."""
    from trueno.quant import fused

    rec = RECORDS[GGMLType[name]]
    relayout = name in ("Q8_0", "Q4_0")  # re-laid (37 rows: never grouped.py's layout)
    if rec.best_level(level, relayout) != level:
        pytest.skip(f"{name} has no {level} kernel")
    assert fused.PLAIN_COLS < 4352
    p = weight(name, relayout, rows=37, cols=cols, isa=level)
    rng = np.random.default_rng(cols)
    for n_vec in range(2, 8):
        xs = rng.standard_normal((n_vec, cols)).astype(np.float32)
        xs[-1, :32] = 0  # a zero activation block
        out = np.full((n_vec, p.shape[0]), np.nan, np.float32)
        assert p.matvecs_into(xs, out)
        for b in range(n_vec):
            assert np.array_equal(out[b], p.matvec(xs[b])), (n_vec, b)


# a block's quant bytes (after its f16 fields and the K-quants' scales; Q6_K's ql and qh come
# first, its scales and d after them): set to 0xFF, they put every weight at its format's top
QUANT_BYTES = {
    "Q4_0": slice(2, None),
    "Q4_1": slice(4, None),
    "Q5_0": slice(2, None),
    "Q5_1": slice(4, None),
    "Q4_K": slice(16, None),
    "Q5_K": slice(16, None),
    "Q6_K": slice(0, 192),
}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("relayout", [True, False])
@pytest.mark.parametrize("name", list(QUANT_BYTES))
def test_largest_products_do_not_wrap(name, relayout, level):
    """Every weight at its format's top (15, 31 or 63 unsigned) against activations of
    +-127 (a constant row quantizes to 127 throughout): the integer sums at their largest,
    vpmaddubsw's pair sums included, neither saturate nor wrap in any form, so B vectors equal
    the one-vector dot bit for bit, and both the numpy reference."""
    rec = RECORDS[GGMLType[name]]
    if rec.best_level(level, relayout and rec.relayout is not None) != level:
        pytest.skip(f"{name} has no {level} kernel")
    rows, cols = 24, 768 if rec.act_block == 256 else 640
    rng = np.random.default_rng(3)
    blocks = api.quantize(rng.standard_normal((rows, cols)).astype(np.float32), name)
    raw = blocks.view(np.uint8).reshape(rows * cols // rec.layout[0], rec.block_bytes)
    raw[:, QUANT_BYTES[name]] = 0xFF
    p = PreparedWeight(blocks, name, (rows, cols), relayout=relayout, isa=level)
    xs = np.ones((8, cols), np.float32)
    xs[1::2] *= -1
    xs[2] = np.where(np.arange(cols) % 64 < 32, 1.0, -1.0)  # signs changing block by block
    out = np.empty((8, rows), np.float32)
    assert p.matvecs_into(xs, out)
    want = xs @ api.dequantize(blocks, name, (rows, cols)).T
    for b in range(8):
        assert np.array_equal(out[b], p.matvec(xs[b])), b
    assert np.allclose(out, want, rtol=1e-2, atol=1e-2 * np.abs(want).max())
