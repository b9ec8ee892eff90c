"""The CUDA sources compile with NVRTC, the compiler cupy uses at run time (stricter than nvcc:
no implicit CUDA runtime header). Needs cupy and libnvrtc but no device; skips otherwise."""

from __future__ import annotations

import pytest

from trueno.backends.cuda import elementwise, include_options, read_source, source_names


@pytest.fixture(scope="module")
def nvrtc():
    pytest.importorskip("cupy", reason="cupy not installed: the NVRTC check needs it")
    mod = pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    try:
        mod.getVersion()
    except Exception as exc:  # cupy present, libnvrtc missing
        pytest.skip(f"NVRTC not loadable: {exc}")
    return mod


def compile_source(nvrtc, name: str, source: str, arch: str) -> str:
    prog = nvrtc.createProgram(source, f"{name}.cu", (), ())
    try:
        # cupy adds --device-as-default-execution-space to every RawModule/ElementwiseKernel
        options = (
            *include_options(),
            f"-arch=compute_{arch}",
            "--device-as-default-execution-space",
        )
        try:
            nvrtc.compileProgram(prog, options)
        except Exception as exc:
            pytest.fail(
                f"NVRTC failed on {name} for compute_{arch}: {exc}\n{nvrtc.getProgramLog(prog)}"
            )
        ptx = nvrtc.getPTX(prog)
        return ptx.decode() if isinstance(ptx, bytes) else ptx
    finally:
        nvrtc.destroyProgram(prog)


@pytest.mark.parametrize("arch", ["80", "90"])
def test_sources_compile_with_nvrtc(nvrtc, arch):
    for name in source_names():
        assert ".entry" in compile_source(nvrtc, name, read_source(name), arch)
    ptx = compile_source(nvrtc, "elementwise_check", elementwise.cuda_check_source(), arch)
    assert ptx.count(".entry") == 2 * (len(elementwise.EXPRESSIONS) + len(elementwise.GATED))
