"""GPU tests: ``@pytest.mark.gpu`` tests need cupy and a CUDA device and skip with the reason
otherwise. The rest of this folder runs anywhere (nvcc compile checks skip without nvcc)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))  # llm_models, llm_reference


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


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """``model_file(arch, qtype=None) -> path`` of a tiny random model (2-D weights with
    columns divisible by 32 quantized to ``qtype``), written once per module."""
    from llm_models import (
        gguf_metadata,
        gguf_tensors,
        random_hf_state,
        spm_vocab_metadata,
        write_gguf,
    )

    cache: dict = {}

    def make(arch: str, qtype: str | None = None) -> Path:
        key = (arch, qtype)
        if key not in cache:
            tensors = gguf_tensors(arch, random_hf_state(arch, seed=4))
            if qtype is not None:
                from trueno.gguf.constants import GGMLType
                from trueno.quant import quantize

                t = GGMLType[qtype]
                for name, w in list(tensors.items()):
                    if w.ndim == 2 and w.shape[1] % 32 == 0:
                        tensors[name] = (quantize(w, t), t, w.shape)
            md = {**gguf_metadata(arch), **spm_vocab_metadata()}
            folder = tmp_path_factory.mktemp(f"{arch}_{qtype}")
            cache[key] = write_gguf(folder / "m.gguf", md, tensors)
        return cache[key]

    return make
