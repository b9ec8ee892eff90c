"""Fixtures of the LLM engine tests (helpers live in ``llm_models``, a uniquely named module,
so test modules never import one of the suite's several ``conftest`` modules by name)."""

from __future__ import annotations

import pytest
from llm_archs import hf_model, to_gguf
from llm_models import gguf_metadata, gguf_tensors, random_hf_state, spm_vocab_metadata, write_gguf


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """``tiny_model_path(arch) -> (path, hf_state_dict)``, each written once per session."""
    cache: dict = {}

    def make(arch: str):
        if arch not in cache:
            sd = random_hf_state(arch)
            path = tmp_path_factory.mktemp(f"tiny_{arch}") / f"{arch}.gguf"
            md = {**gguf_metadata(arch), **spm_vocab_metadata()}
            write_gguf(path, md, gguf_tensors(arch, sd))
            cache[arch] = (path, sd)
        return cache[arch]

    return make


@pytest.fixture(scope="session")
def arch_model(tmp_path_factory):
    """``arch_model(arch) -> (gguf path, torch, transformers model)``, made once per session."""
    cache: dict = {}

    def make(arch: str):
        if arch not in cache:
            torch, hf = hf_model(arch)
            md, tensors, _ = to_gguf(arch, hf)
            path = write_gguf(tmp_path_factory.mktemp(arch) / f"{arch}.gguf", md, tensors)
            cache[arch] = (path, torch, hf)
        return cache[arch]

    return make
