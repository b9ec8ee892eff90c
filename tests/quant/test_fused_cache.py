"""fused.py's numba cache is dropped when the IR sources (simd.py, llvm_ir.py, kernels.py)
change."""

from __future__ import annotations

import os

import pytest

from trueno.quant import simd

if not simd.available():
    pytest.skip("the fused AVX2 drivers need AVX2", allow_module_level=True)

from trueno.quant.fused import IR_SOURCES, drop_stale_cache  # noqa: E402


def test_cache_dropped_only_when_ir_sources_change(tmp_path):
    assert "kernels.py" in IR_SOURCES  # the records choose the IR bodies
    for name in IR_SOURCES:
        (tmp_path / name).write_text("# ir\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    kept = cache / "other.f-1.py311.nbi"
    kept.write_text("x")

    def cached():
        (cache / "fused.k-1.py311.nbi").write_text("index")
        (cache / "fused.k-1.py311.1.nbc").write_text("code")

    cached()
    drop_stale_cache(tmp_path)  # first sight: no stamp yet, drop
    assert not list(cache.glob("fused.*.nb?")) and kept.exists()
    cached()
    drop_stale_cache(tmp_path)  # nothing changed: keep
    assert len(list(cache.glob("fused.*.nb?"))) == 2
    st = (tmp_path / "simd.py").stat()
    os.utime(tmp_path / "simd.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    drop_stale_cache(tmp_path)  # simd.py changed: drop
    assert not list(cache.glob("fused.*.nb?")) and kept.exists()
