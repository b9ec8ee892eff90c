"""The format registry and the input checks every quant entry point shares.

A format module declares one :class:`Format` (its GGML type, the numpy reference dequantizer
that is the spec, a numba dequantizer, an optional quantizer and a portable fused matvec) and
registers it. Format modules are imported on first use, so ``import trueno.quant`` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trueno.errors import DTypeError, QuantError, UnsupportedError
from trueno.gguf.constants import BLOCK_LAYOUT, GGMLType

# f16 bit pattern -> f32 value; the numba kernels index it (exact, no float16 scalars needed)
F16_TO_F32 = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@dataclass(frozen=True)
class Format:
    """One GGML block format. Reference functions work on ``(n_blocks, block_bytes)`` uint8."""

    ggml_type: GGMLType
    dequantize_ref: Callable[[np.ndarray], np.ndarray]  # (n, bytes) u8 -> (n, elems) f32
    dequantize_numba: Callable | None = None  # (blocks (n, bytes) u8, F16_TO_F32, out) -> None
    quantize_ref: Callable[[np.ndarray], np.ndarray] | None = None  # (n, elems) f32 -> u8
    matvec_numba: Callable | None = None  # (w (rows, row_bytes) u8, x f32, F16_TO_F32, out)

    @property
    def block_elems(self) -> int:
        return BLOCK_LAYOUT[self.ggml_type][0]

    @property
    def block_bytes(self) -> int:
        return BLOCK_LAYOUT[self.ggml_type][1]

    @property
    def name(self) -> str:
        return self.ggml_type.name


_REGISTRY: dict[GGMLType, Format] = {}

_MODULES = {
    GGMLType.F32: "floats",
    GGMLType.F16: "floats",
    GGMLType.BF16: "floats",
    GGMLType.Q4_0: "q4_0",
    GGMLType.Q4_1: "q4_1",
    GGMLType.Q5_0: "q5_0",
    GGMLType.Q5_1: "q5_1",
    GGMLType.Q8_0: "q8_0",
    GGMLType.Q2_K: "q2_k",
    GGMLType.Q3_K: "q3_k",
    GGMLType.Q4_K: "q4_k",
    GGMLType.Q5_K: "q5_k",
    GGMLType.Q6_K: "q6_k",
    GGMLType.Q8_K: "q8_k",
    GGMLType.IQ4_NL: "iq4_nl",
    GGMLType.IQ4_XS: "iq4_xs",
}


def register(fmt: Format) -> Format:
    """Register a format under the GGML type it declares."""
    _REGISTRY[fmt.ggml_type] = fmt
    return fmt


def as_ggml_type(ggml_type) -> GGMLType:
    try:
        return GGMLType(ggml_type) if not isinstance(ggml_type, str) else GGMLType[ggml_type]
    except (ValueError, KeyError):
        raise UnsupportedError(f"unknown GGML type {ggml_type!r}") from None


def get_format(ggml_type) -> Format:
    """The registered :class:`Format` of ``ggml_type`` (GGMLType, its int value or its name)."""
    t = as_ggml_type(ggml_type)
    fmt = _REGISTRY.get(t)
    if fmt is None:
        module = _MODULES.get(t)
        if module is None:
            supported = ", ".join(k.name for k in _MODULES)
            raise UnsupportedError(f"GGML type {t.name} is not supported (supported: {supported})")
        importlib.import_module(f"trueno.quant.{module}")
        fmt = _REGISTRY[t]
    return fmt


def supported_types() -> tuple[GGMLType, ...]:
    return tuple(_MODULES)


def f16_bits(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The little-endian f16 field at byte ``offset`` of each block, as f32 (shape (n, 1))."""
    return blocks[:, offset : offset + 2].copy().view(np.float16).astype(np.float32)


def signed_absmax(x: np.ndarray) -> np.ndarray:
    """Per row of (n, k): the value of largest magnitude, sign kept (shape (n, 1))."""
    return np.take_along_axis(x, np.abs(x).argmax(axis=-1, keepdims=True), axis=-1)


def inverse_or_zero(d: np.ndarray) -> np.ndarray:
    """1 / d elementwise, 0 where d == 0 (llama.cpp's ``id = d ? 1.0f/d : 0.0f``)."""
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d)


def u16_field(blocks: np.ndarray, offset: int) -> np.ndarray:
    return blocks[:, offset : offset + 2].copy().view(np.uint16)


def check_shape(fmt: Format, shape) -> tuple[int, ...]:
    """Validate a tensor shape (numpy order) against the block size; returns it as a tuple."""
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise QuantError(f"{fmt.name}: shape must be a sequence of ints, got {shape!r}") from None
    if not shape or any(s < 0 for s in shape):
        raise QuantError(f"{fmt.name}: shape must be non-empty with sizes >= 0, got {shape}")
    if shape[-1] % fmt.block_elems:
        raise QuantError(
            f"{fmt.name}: row length {shape[-1]} is not a multiple of the block "
            f"size {fmt.block_elems}"
        )
    return shape


def row_bytes(fmt: Format, n_cols: int) -> int:
    return n_cols // fmt.block_elems * fmt.block_bytes


_FLOAT_DTYPES = {GGMLType.F32: np.float32, GGMLType.F16: np.float16, GGMLType.BF16: np.uint16}


def as_rows(blocks, fmt: Format, shape) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate raw tensor data and return it as ``(rows, row_bytes)`` uint8 plus the shape.

    Accepts uint8 bytes of any shape whose total matches, or (float formats) an array of the
    format's own dtype (f32, f16, BF16 as uint16 bits)."""
    shape = check_shape(fmt, shape)
    if not isinstance(blocks, np.ndarray):
        raise DTypeError(f"{fmt.name}: blocks must be a numpy array, got {type(blocks).__name__}")
    native = _FLOAT_DTYPES.get(fmt.ggml_type)
    if blocks.dtype != np.uint8 and not (native is not None and blocks.dtype == native):
        want = "uint8" if native is None else f"uint8 or {np.dtype(native).name}"
        raise DTypeError(f"{fmt.name}: blocks dtype must be {want}, got {blocks.dtype}")
    n_cols = shape[-1]
    n_rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    rb = row_bytes(fmt, n_cols)
    if blocks.nbytes != n_rows * rb:
        raise QuantError(
            f"{fmt.name}: shape {shape} needs {n_rows * rb} bytes, got {blocks.nbytes} bytes"
        )
    data = np.ascontiguousarray(blocks).reshape(-1).view(np.uint8)
    return data.reshape(n_rows, rb), shape
