"""Every CUDA source compiles with nvcc for sm_80 and sm_90 (no GPU needed), warnings as
errors, together with the element-wise expressions wrapped the way ElementwiseKernel does."""

from __future__ import annotations

import pytest

from trueno.backends.cuda import SOURCE_DIR, elementwise, source_names, source_path
from trueno.backends.cuda.nvcc import compile_ptx, entry_points
from trueno.quant.gpu import KERNEL_OF, MATMUL_KERNEL_OF

ROWWISE = [
    f"{op}_{s}"
    for op in ("softmax", "log_softmax", "layer_norm", "rms_norm")
    for s in ("f32", "f64")
]


@pytest.fixture(scope="module", params=["sm_80", "sm_90"])
def compiled(request, nvcc_path, tmp_path_factory):
    generated = tmp_path_factory.mktemp("ew") / "elementwise_check.cu"
    generated.write_text(elementwise.cuda_check_source())
    sources = [source_path(n) for n in source_names()] + [generated]
    res = compile_ptx(request.param, sources, nvcc=nvcc_path)
    assert res.ok, f"nvcc -ptx -arch={request.param} failed:\n{res.log}"
    return res


def test_sources_found():
    assert set(source_names()) == {"quant_matvec", "rowwise", "transformer"}
    assert (SOURCE_DIR / "_common.cu").is_file()


def test_every_kernel_the_python_side_launches_exists(compiled):
    want = [*KERNEL_OF.values(), *MATMUL_KERNEL_OF.values()]
    assert sorted(entry_points(compiled.ptx["quant_matvec"])) == sorted(want)
    assert sorted(entry_points(compiled.ptx["rowwise"])) == sorted(ROWWISE)
    assert sorted(entry_points(compiled.ptx["transformer"])) == [
        "attend_merge_f32",
        "attend_one_f32",
        "kv_store_f32",
        "rope_f32",
    ]


def test_every_elementwise_expression_compiles_for_both_dtypes(compiled):
    names = set(entry_points(compiled.ptx["elementwise_check"]))
    ops = [*elementwise.EXPRESSIONS, *elementwise.GATED]
    want = {f"ew_{n}_{s}" for n in ops for s in ("f32", "f64")}
    assert names == want


def test_float32_kernels_do_no_double_math(compiled):
    """A stray double constant would run float32 kernels at FP64 rate: f32 PTX has no f64 ops
    (only the f64 kernels may use them). sinf/cosf are exempt: CUDA's own slow path for huge
    arguments (Payne-Hanek reduction) converts to double, off the fast path."""
    ptx = compiled.ptx["elementwise_check"]
    for block in ptx.split(".entry")[1:]:
        name = block.split("(")[0].strip()
        if name.endswith("_f32") and name not in ("ew_sin_f32", "ew_cos_f32"):
            assert ".f64" not in block, f"{name} computes in double"
    for block in compiled.ptx["rowwise"].split(".entry")[1:]:
        name = block.split("(")[0].strip()
        if name.endswith("_f32"):
            assert ".f64" not in block, f"{name} computes in double"
    assert ".f64" not in compiled.ptx["quant_matvec"]
    assert ".f64" not in compiled.ptx["transformer"]


def test_batch_width_matches_the_kernel(compiled):
    from trueno.backends.cuda import read_source
    from trueno.quant.gpu import NCOLS

    assert f"#define TRUENO_NCOLS {NCOLS}\n" in read_source("quant_matvec")


def test_compile_error_is_reported(nvcc_path, tmp_path):
    bad = tmp_path / "bad.cu"
    bad.write_text('extern "C" __global__ void k(float* y) { y[0] = undefined_name; }\n')
    res = compile_ptx("sm_80", [bad], nvcc=nvcc_path)
    assert not res.ok and "undefined_name" in res.log
