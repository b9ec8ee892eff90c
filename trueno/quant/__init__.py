"""GGML block formats: numpy reference dequantizers (the spec), numba dequantizers, quantizers
and fused matvec kernels that read the blocks directly (AVX2 through LLVM IR where the CPU
has it). Format modules and numba load on first use, never at ``import trueno``."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "dequantize",
    "dequantize_tensor",
    "quantize",
    "matvec",
    "prepare",
    "get_format",
    "PreparedWeight",
    "supported_types",
]

if TYPE_CHECKING:
    from trueno.quant.api import dequantize, dequantize_tensor, matvec, quantize
    from trueno.quant.base import get_format, supported_types
    from trueno.quant.prepared import PreparedWeight, prepare

_HOME = {
    "dequantize": "api",
    "dequantize_tensor": "api",
    "quantize": "api",
    "matvec": "api",
    "get_format": "base",
    "supported_types": "base",
    "prepare": "prepared",
    "PreparedWeight": "prepared",
}


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'trueno.quant' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"trueno.quant.{module}"), name)
    globals()[name] = value
    return value
