"""LLM inference: GGUF models (llama, qwen2, gemma3), tokenizer, sampler, generation."""

from __future__ import annotations

from importlib import import_module

# engine exports, imported on first use (model code pulls in numba)
_LAZY = {
    "Model": "trueno.llm.model",
    "Tokenizer": "trueno.llm.tokenizer",
    "Config": "trueno.llm.config",
    "Sampler": "trueno.llm.sampler",
    "generate": "trueno.llm.generate",
    "generate_tokens": "trueno.llm.generate",
    "GenerationStats": "trueno.llm.generate",
    "ChatSession": "trueno.llm.chat",
    "render_chat": "trueno.llm.chat",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trueno.llm' has no attribute {name!r}")
    return getattr(import_module(module), name)

from trueno.llm.tokenizer import Tokenizer  # noqa: E402
