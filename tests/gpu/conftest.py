"""GPU tests: ``@pytest.mark.gpu`` tests need cupy and a CUDA device and skip with the reason
otherwise. The rest of this folder runs anywhere (nvcc compile checks skip without nvcc)."""

from __future__ import annotations

import pytest


def gpu_skip_reason() -> str | None:
    from trueno.backends import cupy_backend

    if cupy_backend.available():
        return None
    return f"needs cupy and a CUDA device: {cupy_backend.why_unavailable()}"


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if item.get_closest_marker("gpu") is None:
            continue
        if reason is None:
            reason = gpu_skip_reason() or ""
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def nvcc_path():
    from trueno.backends.cuda.nvcc import find_nvcc

    path = find_nvcc()
    if path is None:
        pytest.skip("nvcc not found (CUDA toolkit absent): CUDA sources not compile-checked")
    return path
