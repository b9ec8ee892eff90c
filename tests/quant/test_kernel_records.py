"""The kernel records (trueno.quant.kernels) and the ISA levels they are chosen by.

Every level the host runs is checked against the portable kernel and gguf-py's dequantize;
levels the host lacks are skipped by name, and forcing one is refused before any kernel of it
could run (an instruction the CPU lacks kills the process)."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from trueno.errors import BackendUnavailableError, ConfigError, UnsupportedError
from trueno.gguf.constants import BLOCK_LAYOUT, GGMLType
from trueno.quant import kernels, prepare, quantize
from trueno.quant.base import get_format
from trueno.quant.kernels import ISA_LEVELS, RECORDS, host_levels

TYPES = list(RECORDS)


def level_param(level: str):
    """A pytest param for ``level`` that is skipped, with the level's name, when the host
    cannot run it or no record has kernels for it yet."""
    marks = []
    if level not in host_levels():
        lacks = ", ".join(kernels.missing_features(level)) or "numba's target"
        marks.append(pytest.mark.skip(reason=f"ISA level {level} skipped: host lacks {lacks}"))
    elif level != "portable" and not any(level in r.row_dot for r in RECORDS.values()):
        marks.append(pytest.mark.skip(reason=f"ISA level {level} skipped: no kernels yet"))
    return pytest.param(level, marks=marks, id=level)


LEVELS = [level_param(lvl) for lvl in ISA_LEVELS]


@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_record_matches_block_layout_and_resolves(t):
    rec = RECORDS[t]
    assert rec.layout == BLOCK_LAYOUT[t] and rec.block_bytes == BLOCK_LAYOUT[t][1]
    fmt = get_format(t)
    assert (fmt.block_elems, fmt.block_bytes) == BLOCK_LAYOUT[t]
    assert rec.act_block in (0, 32, 256)
    assert rec.act_block == (
        0 if t in (GGMLType.F16, GGMLType.BF16) else BLOCK_LAYOUT[rec.vec_dot_type][0]
    )
    assert kernels.resolve(rec.row_dot["portable"]) is fmt.matvec_numba
    assert set(rec.row_dot) <= set(ISA_LEVELS) and set(rec.relaid_dot) <= set(ISA_LEVELS)
    assert bool(rec.relaid_dot) == (rec.relayout is not None)
    if rec.relayout is not None:
        assert callable(kernels.resolve(rec.relayout))
    for ref in (*rec.row_dot.values(), *rec.relaid_dot.values()):
        assert callable(kernels.resolve(ref))


def test_cuda_kernel_names_are_in_the_cuda_source():
    import re

    from trueno.backends.cuda import read_source
    from trueno.quant.gpu import KERNEL_OF

    source = read_source("quant_matvec")
    assert KERNEL_OF == {t: r.cuda_kernel for t, r in RECORDS.items() if r.cuda_kernel}
    for name in KERNEL_OF.values():
        assert re.search(rf"\b{name}\b", source), name


def test_best_level_falls_back_to_the_best_level_with_kernels():
    rec = RECORDS[GGMLType.Q4_0]
    assert rec.best_level("avx2") == "avx2"
    assert rec.best_level("avx512") == "avx512"
    assert rec.best_level("avxvnni", relaid=True) == "avxvnni"
    # F16/BF16 have no VNNI bodies (f32 FMAs): the next level down with one
    assert RECORDS[GGMLType.F16].best_level("avx512") == "avx2"
    assert rec.best_level("portable") is None
    assert rec.best_level("avx2", relaid=True) == "avx2"


def _gguf_reference(blocks, t, shape, x):
    w = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[t.name]).reshape(shape)
    w = w.astype(np.float64)
    return w, w @ x.astype(np.float64)


def _check(y, w, x, want, block, rel=1e-5):
    """block 0: f32 products; else x rounded to int8 per block (error <= amax / 254 each)."""
    if block:
        amax = np.abs(x.astype(np.float64)).reshape(-1, block).max(axis=1)
        err = np.abs(w) @ np.repeat(amax / 254.0, block) * 1.001
    else:
        err = 0
    tol = err + rel * (np.abs(w) @ np.abs(x.astype(np.float64))) + 1e-6
    assert np.all(np.abs(y - want) <= tol)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("relayout", [True, False], ids=["relaid", "ggml"])
@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_every_level_against_portable_and_gguf_py(rng, t, relayout, level):
    rec = RECORDS[t]
    rows, cols = 23, 768 if rec.act_block == 256 else 32 * 21
    w32 = rng.standard_normal((rows, cols)).astype(np.float32)
    blocks = quantize(w32, t)
    x = (rng.standard_normal(cols) * 3).astype(np.float32)
    p = prepare(blocks, t, (rows, cols), relayout=relayout, isa=level)
    portable = prepare(blocks, t, (rows, cols), isa="portable")
    assert portable.isa == "portable" and portable.backend == "numba"
    if level == "portable":
        assert p.isa == "portable" and not p.relaid
    else:
        assert p.isa == rec.best_level(level, p.relaid) and p.backend == f"numba-{p.isa}"
        assert p.relaid == (relayout and rec.relayout is not None)
    w, want = _gguf_reference(blocks, t, (rows, cols), x)
    y = p.matvec(x)
    _check(y, w, x, want, rec.act_block if p.isa != "portable" else 0)
    _check(portable.matvec(x), w, x, want, 0)
    # against the portable kernel: within the int8 rounding of x and both sides' f32 sums
    y_port = portable.matvec(x).astype(np.float64)
    _check(y, w, x, y_port, rec.act_block if p.isa != "portable" else 0, rel=2e-5)
    assert np.array_equal(p.dequantize(), w.astype(np.float32))


@pytest.mark.parametrize("level", [lvl for lvl in ISA_LEVELS if lvl not in host_levels()])
def test_forcing_a_level_the_host_lacks_is_refused(rng, monkeypatch, level):
    blocks = quantize(rng.standard_normal((2, 64)).astype(np.float32), GGMLType.Q4_0)
    monkeypatch.setenv("TRUENO_QUANT_ISA", level)
    with pytest.raises(BackendUnavailableError, match=f"TRUENO_QUANT_ISA={level}: this CPU lacks"):
        kernels.chosen_level()
    with pytest.raises(BackendUnavailableError):
        prepare(blocks, GGMLType.Q4_0, (2, 64))
    monkeypatch.delenv("TRUENO_QUANT_ISA")
    with pytest.raises(BackendUnavailableError, match=f"isa={level}"):
        prepare(blocks, GGMLType.Q4_0, (2, 64), isa=level)


def test_quant_isa_env_forces_and_validates(rng, monkeypatch):
    blocks = quantize(rng.standard_normal((2, 64)).astype(np.float32), GGMLType.Q8_0)
    monkeypatch.delenv("TRUENO_QUANT_SIMD", raising=False)
    monkeypatch.setenv("TRUENO_QUANT_ISA", "portable")
    assert kernels.chosen_level() == "portable"
    assert prepare(blocks, GGMLType.Q8_0, (2, 64)).backend == "numba"
    with pytest.raises(UnsupportedError, match="SIMD quant kernels requested"):
        prepare(blocks, GGMLType.Q8_0, (2, 64), simd=True)
    monkeypatch.setenv("TRUENO_QUANT_ISA", "sse9")
    with pytest.raises(ConfigError, match="expected one of avx512, avxvnni, avx2, portable"):
        kernels.chosen_level()
    monkeypatch.setenv("TRUENO_QUANT_ISA", host_levels()[0])
    assert kernels.chosen_level() == host_levels()[0]
    monkeypatch.setenv("TRUENO_QUANT_SIMD", "0")  # TRUENO_QUANT_ISA wins over the old switch
    assert kernels.chosen_level() == host_levels()[0]
    monkeypatch.delenv("TRUENO_QUANT_ISA")
    assert kernels.chosen_level() == "portable"


def test_info_shows_the_chosen_level(monkeypatch, capsys):
    from trueno.cli.main import main

    monkeypatch.delenv("TRUENO_QUANT_SIMD", raising=False)
    monkeypatch.setenv("TRUENO_QUANT_ISA", "portable")
    assert main(["info"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("quant ISA"))
    assert "portable (forced by TRUENO_QUANT_ISA" in line
    assert f"host: {', '.join(host_levels())}" in line
    monkeypatch.delenv("TRUENO_QUANT_ISA")
    report = kernels.isa_report()
    assert report.chosen == host_levels()[0] and report.error is None


def test_numba_target_limits_the_levels(monkeypatch):
    """A level runs only when numba's code target (NUMBA_CPU_NAME / _FEATURES) has it too."""
    from numba.core import config

    monkeypatch.setattr(config, "CPU_FEATURES", "")
    monkeypatch.setattr(config, "CPU_NAME", "haswell")
    assert kernels._target_has("avx2") and not kernels._target_has("avx512")
    assert not kernels._target_has("avxvnni")
    monkeypatch.setattr(config, "CPU_NAME", "znver5")
    assert all(kernels._target_has(lvl) for lvl in ("avx512", "avxvnni", "avx2"))
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+fma,+f16c,+avxvnni")
    assert kernels._target_has("avxvnni") and not kernels._target_has("avx512")


VNNI_LEVELS = [level_param(lvl) for lvl in ("avx512", "avxvnni")]


@pytest.mark.parametrize("level", VNNI_LEVELS)
@pytest.mark.parametrize("relayout", [True, False], ids=["relaid", "ggml"])
@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_vnni_levels_are_bit_identical_to_avx2(rng, t, relayout, level):
    """vpdpbusd / vpdpwssd sum the same integer products as vpmaddubsw + vpmaddwd (no operand
    reaches vpmaddubsw's saturation), so one vector and B vectors give the same bits."""
    if "avx2" not in host_levels():
        pytest.skip("host lacks avx2: nothing to compare against")
    rec = RECORDS[t]
    rows, cols = 37, 1024 if rec.act_block == 256 else 32 * 27
    blocks = quantize(rng.standard_normal((rows, cols)).astype(np.float32), t)
    # extreme activations too: int8 +-127 after rounding, and weights at their format's ends
    x = (rng.standard_normal((5, cols)) * 3).astype(np.float32)
    x[1] = np.where(rng.random(cols) < 0.5, -1e3, 1e3).astype(np.float32)
    p = prepare(blocks, t, (rows, cols), relayout=relayout, isa=level)
    ref = prepare(blocks, t, (rows, cols), relayout=relayout, isa="avx2")
    assert p.isa == rec.best_level(level, p.relaid)
    for v in x:
        assert np.array_equal(p.matvec(v), ref.matvec(v))
    out, want = np.empty((5, rows), np.float32), np.empty((5, rows), np.float32)
    p.matvecs_into(x, out)
    ref.matvecs_into(x, want)
    assert np.array_equal(out, want)
