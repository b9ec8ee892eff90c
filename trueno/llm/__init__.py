"""LLM inference: GGUF models (llama, qwen2, gemma3), tokenizer, sampler, generation."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from trueno.llm.tokenizer import Tokenizer

# engine exports, imported on first use (model code pulls in numba)
_LAZY = {
    "Model": "trueno.llm.model",
    "Config": "trueno.llm.config",
    "Sampler": "trueno.llm.sampler",
    "generate": "trueno.llm.generate",
    "generate_tokens": "trueno.llm.generate",
    "Generation": "trueno.llm.generate",
    "GenerationStats": "trueno.llm.generate",
    "ChatSession": "trueno.llm.chat",
    "render_chat": "trueno.llm.chat",
}

__all__ = ["Tokenizer", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trueno.llm' has no attribute {name!r}")
    return getattr(import_module(module), name)
