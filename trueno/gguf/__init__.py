"""GGUF file format: :func:`load` a file (zero-copy, validated), write one with
:class:`GGUFWriter` or :func:`write_gguf`, summarise one with :func:`format_info`."""

from typing import Any

from trueno.gguf.constants import GGMLType, GGUFValueType, Keys, TokenType
from trueno.gguf.reader import GGUFFile, GGUFStringArray, TensorInfo, load

__all__ = [
    "GGMLType",
    "GGUFFile",
    "GGUFStringArray",
    "GGUFValueType",
    "GGUFWriter",
    "Keys",
    "TensorInfo",
    "TokenType",
    "format_info",
    "load",
    "write_gguf",
]


def __getattr__(name: str) -> Any:
    # writer and info are imported on first use: reading a model never pays for them
    if name in ("GGUFWriter", "write_gguf"):
        from trueno.gguf import writer

        return getattr(writer, name)
    if name == "format_info":
        from trueno.gguf.info import format_info

        return format_info
    raise AttributeError(f"module 'trueno.gguf' has no attribute {name!r}")
