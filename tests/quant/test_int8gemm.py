"""The register-blocked int8 GEMM (trueno.quant.int8gemm) at every ISA level the host has:
against gguf-py's dequantize and a float64 matmul within the int8-activation bound of the fused
matvec, near the matvec itself (the same integer sums, another f32 order), the IR packing of
full tiles equal to the numba packing, and the level without a tile (portable) on dequantize +
sgemm. Levels the host lacks are skipped by name."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_batched import QUANT_BYTES
from test_int8mm import gguf_reference
from test_kernel_records import level_param
from test_prepared import check_exact, check_int8_activations

from trueno.quant import api, grouped
from trueno.quant.base import F16_TO_F32
from trueno.quant.prepared import MATVEC_ROWS, PreparedWeight

RELAID = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
K_QUANTS = ["Q4_K", "Q5_K", "Q6_K"]  # packed from the GGML blocks, activations per 32 too
TYPES = RELAID + K_QUANTS
LEVELS = [level_param(lvl) for lvl in ("avx512", "avxvnni", "avx2")]


def prepared(rng, name, rows, cols, level, scale=1.0):
    w = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    blocks = api.quantize(w, name)
    return blocks, PreparedWeight(blocks, name, (rows, cols), isa=level)


def gemm(p, xs):
    from trueno.quant import int8gemm

    out = np.full((xs.shape[0], p.shape[0]), np.nan, np.float32)
    if not int8gemm.matmul_into(p, xs, out):
        return None
    return out


def close_to_matvecs(got, p, xs):
    """The GEMM's integer block sums are the matvec's; only the f32 sums differ in order (the
    K-quants' matvec quantizes activations per 256: nothing to compare bit for bit)."""
    if p.format.name in K_QUANTS:
        return
    want = np.stack([p.matvec(x) for x in xs]).astype(np.float64)
    w = np.abs(p.dequantize().astype(np.float64))
    tol = 1e-5 * (np.abs(xs.astype(np.float64)) @ w.T) + 1e-6
    assert np.all(np.abs(got - want) <= tol)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", TYPES)
@settings(max_examples=6, deadline=None)
@given(
    n_tok=st.integers(1, 40),  # token tails of every length (NT = 4 or 8)
    rows=st.integers(1, 40),  # row tails: the numba packing of partial tiles
    n_blocks=st.integers(1, 9),  # odd block counts: GGML's packing of the last block
    scale=st.sampled_from([1e-3, 1.0, 30.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_gemm_matches_gguf_reference(name, level, n_tok, rows, n_blocks, scale, seed):
    if level == "avx2" and name == "Q8_0":
        pytest.skip("no Q8_0 tile at avx2 (vpmaddubsw would saturate)")
    rng = np.random.default_rng(seed)
    cols = (256 if name in K_QUANTS else 32) * n_blocks
    blocks, p = prepared(rng, name, rows, cols, level)
    # re-laid in groups of 16 rows (grouped.py) where the type and rows allow at avx512, else
    # the 32-weight types in pairs
    assert p.isa == level and p.grouped == grouped.applies(name, level, (rows, cols))
    assert p.relaid == (name in RELAID and not p.grouped)
    xs = (rng.standard_normal((n_tok, cols)) * scale).astype(np.float32)
    xs[0, :32] = 0  # an all-zero activation block (scale 0)
    got = gemm(p, xs)
    assert got is not None and got.shape == (n_tok, rows)
    w, want = gguf_reference(blocks, name, (rows, cols), xs)
    for t in range(n_tok):
        check_int8_activations(got[t], w, xs[t], want[t], 32)
    close_to_matvecs(got, p, xs)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", TYPES)
def test_gemm_full_tiles_and_threads(name, level):
    """Several full tiles per thread (the IR packing), rows and tokens with tails."""
    if level == "avx2" and name == "Q8_0":
        pytest.skip("no Q8_0 tile at avx2 (vpmaddubsw would saturate)")
    rng = np.random.default_rng(7)
    rows, cols = 200, 1024
    blocks, p = prepared(rng, name, rows, cols, level)
    xs = rng.standard_normal((37, cols)).astype(np.float32)
    got = gemm(p, xs)
    w, want = gguf_reference(blocks, name, (rows, cols), xs)
    for t in range(xs.shape[0]):
        check_int8_activations(got[t], w, xs[t], want[t], 32)
    close_to_matvecs(got, p, xs)
    assert np.array_equal(gemm(p, xs[:5]), got[:5])  # the scratch of a longer call reused


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", list(QUANT_BYTES))
def test_largest_products_do_not_wrap(name, level):
    """Every weight at its format's top (15, 31 or 63 unsigned) against activations of +-127
    (a constant row quantizes to 127 throughout): the integer sums at their largest, which
    AVX2 adds as i16 in runs of vpmaddubsw pair sums (int8gemm._dots, int8gemm.TOPS), stay
    inside the int8 bound and near the matvec."""
    rng = np.random.default_rng(5)
    rows, cols = 24, 1024
    blocks, p = prepared(rng, name, rows, cols, level)
    block_bytes = blocks.nbytes // (rows * cols // (256 if name in K_QUANTS else 32))
    blocks.view(np.uint8).reshape(-1, block_bytes)[:, QUANT_BYTES[name]] = 0xFF
    p = PreparedWeight(blocks, name, (rows, cols), isa=level)
    xs = np.ones((9, cols), np.float32)
    xs[1::2] *= -1
    xs[2] = np.where(np.arange(cols) % 64 < 32, 1.0, -1.0)  # signs changing block by block
    got = gemm(p, xs)
    assert got is not None
    w, want = gguf_reference(blocks, name, (rows, cols), xs)
    for t in range(xs.shape[0]):
        check_int8_activations(got[t], w, xs[t], want[t], 32)
    close_to_matvecs(got, p, xs)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", RELAID)
def test_ir_packing_equals_numba_packing(name, level, monkeypatch):
    import numba

    from trueno.quant import grouped, int8gemm, int8pack

    monkeypatch.setattr(grouped, "ENABLED", False)  # the paired form's packers (48 rows)
    form = int8gemm.FORMS[name][0]
    W = int8pack.TILE_SHAPE[level][0]
    rng = np.random.default_rng(8)
    rows, cols = 3 * W, 32 * 6
    pb = prepared(rng, name, rows, cols, level)[1]._relaid
    n_steps = 6 if form == "split" else 3

    kind = f"{level}/{form}"

    @numba.njit
    def ir_pack(qs, qh, r0, n, wq):
        int8pack.pack_rows(kind, qs, qh, r0, n, wq)

    size = 6 * 8 * W
    a, b = np.zeros(size, np.uint32), np.ones(size, np.uint32)
    wd, wm = np.zeros(6 * W, np.float32), np.zeros(6 * W, np.float32)
    ir_pack(pb.qs, pb.qh, W, n_steps, a)
    if form == "split":
        int8pack.pack_split_q8_0(pb.qs.view(np.uint32), pb.d, F16_TO_F32, W, W, b, wd)
    else:
        qs32 = pb.qs.view(np.uint32)
        int8pack.pack_paired(qs32, pb.d, pb.m, pb.qh, F16_TO_F32, W, W, b, wd, wm)
    assert np.array_equal(a, b)
    assert np.array_equal(wd.reshape(6, W), F16_TO_F32[pb.d[W : 2 * W]].T)


@pytest.mark.parametrize("name", TYPES)
def test_portable_level_has_no_tile_and_keeps_sgemm(name):
    from trueno.quant import int8gemm, int8mm

    rng = np.random.default_rng(9)
    rows, cols = 24, 512
    blocks, p = prepared(rng, name, rows, cols, "portable")
    assert int8gemm.kernel_for(p) is None and not int8mm.wanted(p, 64)
    xs = rng.standard_normal((MATVEC_ROWS + 4, cols)).astype(np.float32)
    got = p.matmul(xs)
    w, want = gguf_reference(blocks, name, (rows, cols), xs)
    for t in range(xs.shape[0]):
        check_exact(got[t], w, xs[t], want[t])


def test_k_quants_in_ggml_layout_only_and_legacy_re_laid_only():
    from trueno.quant import int8gemm

    rng = np.random.default_rng(11)
    for name in ("Q4_0", "Q4_K"):
        blocks = api.quantize(rng.standard_normal((16, 512)).astype(np.float32), name)
        p = PreparedWeight(blocks, name, (16, 512), relayout=False)
        assert (int8gemm.kernel_for(p) is None) == (name == "Q4_0")  # GGML Q4_0: row dots


@pytest.mark.parametrize("level", LEVELS)
def test_matmul_takes_the_gemm_where_it_has_a_tile(level, monkeypatch):
    from trueno.quant import int8mm

    rng = np.random.default_rng(10)
    rows, cols = 48, 512
    blocks, p = prepared(rng, "Q4_0", rows, cols, level)
    xs = rng.standard_normal((MATVEC_ROWS + 1, cols)).astype(np.float32)
    assert int8mm.wanted(p, xs.shape[0])  # no size floor, no token ceiling
    assert np.array_equal(p.matmul(xs), gemm(p, xs))
    monkeypatch.setattr(int8mm, "GEMM", False)  # the row dots' token range and size floor
    assert not int8mm.wanted(p, xs.shape[0])
    monkeypatch.setattr(int8mm, "GEMM", True)
    monkeypatch.setattr(int8mm, "ENABLED", False)
    assert not int8mm.wanted(p, xs.shape[0])
    w, want = gguf_reference(blocks, "Q4_0", (rows, cols), xs)
    got = p.matmul(xs)  # dequantize + sgemm
    for t in range(xs.shape[0]):
        check_exact(got[t], w, xs[t], want[t])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", ["Q4_K", "Q6_K"])
def test_ir_packing_of_k_quants_equals_numba_packing(name, level):
    import numba

    from trueno.quant import int8gemm, int8pack

    W = int8pack.TILE_SHAPE[level][0]
    rng = np.random.default_rng(12)
    rows, cols = 3 * W, 768  # 3 super-blocks: Q6_K's 210-byte blocks at odd offsets
    blocks = prepared(rng, name, rows, cols, level)[0]
    kind = f"{level}/{int8gemm.FORMS[name][0]}"

    @numba.njit
    def ir_pack(blocks, r0, n, wq):
        int8pack.pack_rows(kind, blocks, blocks, r0, n, wq)

    n_blk = cols // 32
    a, b = np.zeros(n_blk * 8 * W, np.uint32), np.ones(n_blk * 8 * W, np.uint32)
    wd, wm = np.zeros(2 * n_blk * W, np.float32), np.zeros(n_blk * W, np.float32)
    if name == "Q4_K":
        ir_pack(blocks, W, cols // 256 * 4, a)
        int8pack.pack_k4(blocks, F16_TO_F32, W, W, b, wd, wm, False)
    else:
        ir_pack(blocks, W, cols // 256, a)
        int8pack.pack_q6_k(blocks, F16_TO_F32, W, W, b, wd)
    assert np.array_equal(a, b)


CACHE_PROBE = """
import numpy as np
from trueno.quant import api, int8gemm
from trueno.quant.prepared import PreparedWeight

rng = np.random.default_rng(0)
for name in ("Q4_1", "Q4_K"):
    blocks = api.quantize(rng.standard_normal((64, 256)).astype(np.float32), name)
    p = PreparedWeight(blocks, name, (64, 256))
    out = np.empty((32, 64), np.float32)
    assert int8gemm.matmul_into(p, rng.standard_normal((32, 256)).astype(np.float32), out)
print(sum(sum(k.stats.cache_misses.values()) for k in int8gemm._KERNELS.values()),
      sum(sum(k.stats.cache_hits.values()) for k in int8gemm._KERNELS.values()))
"""


def test_a_second_process_loads_the_gemm_from_the_disk_cache():
    """Each GEMM is a closure numba caches on disk keyed by its closure's values: those must
    pickle the same in every process (a dispatcher in the closure did not, so every process
    compiled the GEMM again, seconds on a first prompt, and added a cache file)."""
    import subprocess
    import sys

    from trueno.quant import int8gemm, kernels

    if kernels.chosen_level() not in int8gemm.TILE_SHAPE:
        pytest.skip(f"no GEMM tile at the host's level {kernels.chosen_level()}")
    for _ in range(2):  # the first may compile (a cold cache); the second must not
        run = subprocess.run([sys.executable, "-c", CACHE_PROBE], capture_output=True,
                             text=True, timeout=600, check=True)  # fmt: skip
    misses, hits = map(int, run.stdout.split())
    assert (misses, hits) == (0, 2), run.stdout


def _amx_why_not():
    from trueno.quant import amx

    return amx.missing()


# each tile form once (zp: Q4_0, Q8_0's top 255; min: Q4_K; half: Q6_K), Q4_0 in both layouts:
# the packers are the VNNI GEMM's, tested above
AMX_CASES = [("Q4_0", 200), ("Q4_0", 256), ("Q8_0", 200), ("Q4_K", 256), ("Q6_K", 256)]


@pytest.mark.skipif(_amx_why_not() is not None, reason=f"AMX tiles skipped: {_amx_why_not()}")
@pytest.mark.parametrize("name,rows", AMX_CASES)
def test_amx_tiles_equal_the_vnni_tiles(name, rows, monkeypatch):
    """The AMX tile sums the same integers as the avx512 VNNI tile and scales them in the same
    order: the same floats bit for bit, over a block count that leaves a tail after the groups
    of four tile products (the 32-weight types), token and row tails, and an all-zero block.
    256 rows are re-laid by grouped.py, 200 in pairs."""
    from trueno.quant import int8gemm

    rng = np.random.default_rng(11)
    cols = 1024 + (256 if name in K_QUANTS else 32)
    blocks, p = prepared(rng, name, rows, cols, "avx512")
    assert p.grouped == (rows == 256)
    xs = rng.standard_normal((37, cols)).astype(np.float32)
    xs[0, :32] = 0
    monkeypatch.setenv("TRUENO_QUANT_AMX", "0")
    assert int8gemm.tile_level(p) == "avx512"
    want = gemm(p, xs)
    monkeypatch.setenv("TRUENO_QUANT_AMX", "1")
    assert int8gemm.tile_level(p) == "amx"
    got = gemm(p, xs)
    assert np.array_equal(got, want)
    w, ref = gguf_reference(blocks, name, (rows, cols), xs)
    for t in range(xs.shape[0]):
        check_int8_activations(got[t], w, xs[t], ref[t], 32)


def test_amx_is_off_by_default_and_runs_only_where_the_host_has_it(monkeypatch):
    from trueno.errors import ConfigError
    from trueno.quant import amx, kernels

    monkeypatch.delenv("TRUENO_QUANT_AMX", raising=False)
    assert not amx.enabled()
    monkeypatch.setenv("TRUENO_QUANT_AMX", "1")
    assert amx.enabled() == (amx.missing() is None)
    if kernels.host_lacks(amx.FEATURES):
        assert not amx.enabled() and "lacks amx" in amx.missing()
    monkeypatch.setenv("TRUENO_QUANT_AMX", "maybe")
    with pytest.raises(ConfigError, match="TRUENO_QUANT_AMX"):
        amx.enabled()
