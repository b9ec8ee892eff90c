"""A module's numba cache is dropped when a module its kernels inline changes
(trueno.backends.numba_cache), and every module whose kernels inline another's says so."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from trueno.backends.numba_cache import drop_stale

ROOT = Path(__file__).resolve().parents[2] / "trueno"


def test_cache_dropped_only_when_a_source_changes(tmp_path):
    sources = ("simd.py", "../quant/llvm_ir.py")
    (tmp_path / "fused.py").write_text("# the module\n")
    (tmp_path / "simd.py").write_text("# ir\n")
    (tmp_path.parent / "quant").mkdir(exist_ok=True)
    (tmp_path.parent / "quant" / "llvm_ir.py").write_text("# ir\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    kept = cache / "other.f-1.py311.nbi"
    kept.write_text("x")

    def cached():
        (cache / "fused.k-1.py311.nbi").write_text("index")
        (cache / "fused.k-1.py311.1.nbc").write_text("code")

    module = str(tmp_path / "fused.py")
    cached()
    drop_stale(module, sources)  # first sight: no stamp yet, drop
    assert not list(cache.glob("fused.*.nb?")) and kept.exists()
    cached()
    drop_stale(module, sources)  # nothing changed: keep
    assert len(list(cache.glob("fused.*.nb?"))) == 2
    for changed in (tmp_path / "simd.py", tmp_path.parent / "quant" / "llvm_ir.py"):
        st = changed.stat()
        os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        drop_stale(module, sources)  # a source changed: drop
        assert not list(cache.glob("fused.*.nb?")) and kept.exists()
        cached()


@pytest.mark.parametrize(
    "module, needs",
    [
        ("llm/kernels.py", {"attention.py", "../quant/llvm_ir.py"}),
        ("llm/attention.py", {"../quant/llvm_ir.py"}),
        ("quant/fused.py", {"simd.py", "llvm_ir.py", "kernels.py"}),
        ("backends/numba_kernels/elementwise.py", {"_math.py"}),
        ("backends/numba_kernels/activations.py", {"_math.py", "elementwise.py"}),
        ("backends/numba_kernels/rowwise.py", {"_math.py", "reductions.py", "stats.py"}),
    ],
)
def test_modules_inlining_others_drop_their_stale_cache(module, needs):
    """The call is there, before the kernels, naming at least the modules it imports kernels
    or IR from (a missing name: that module's edits would leave stale machine code)."""
    src = (ROOT / module).read_text()
    call = re.search(r"^drop_stale\(__file__, (.*)\)$", src, re.M)
    assert call, f"{module} has no drop_stale(__file__, ...) call"
    named = set(re.findall(r'"([^"]+\.py)"', call.group(1)))
    if "IR_SOURCES" in call.group(1):
        named |= {"simd.py", "llvm_ir.py", "kernels.py"}
    assert needs <= named
    assert src.index("drop_stale(__file__") < src.index("@")  # before any kernel
