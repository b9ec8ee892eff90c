"""Half-width float formats as bits, in numpy: f32 <-> bf16 and f16 -> f32.

The one home of these conversions for every layer above (the GGUF writer and reader, the
quant formats, the LLM weights). numpy has float16 but no bfloat16: bf16 is the top half of
an f32's bits, so it travels as uint16.
"""

from __future__ import annotations

import numpy as np


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float -> bfloat16 bits (uint16), round to nearest even, NaN kept quiet (as ggml's
    ggml_compute_fp32_to_bf16 and gguf-py)."""
    n = np.asarray(x, dtype=np.float32).view(np.uint32)
    quiet_nan = (n & np.uint32(0xFFFF0000)) | np.uint32(64 << 16)
    n = np.where((n & 0x7FFFFFFF) > 0x7F800000, quiet_nan, n)
    return ((n.astype(np.uint64) + (0x7FFF + ((n >> 16) & 1))) >> 16).astype(np.uint16)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (any 2-byte dtype, or raw bytes) -> a new float32 array (exact)."""
    wide = np.ascontiguousarray(bits).view(np.uint16).astype(np.uint32) << np.uint32(16)
    return wide.view(np.float32)


def f16_to_f32(bits: np.ndarray) -> np.ndarray:
    """IEEE half bits (or float16 values, or raw bytes) -> a new float32 array (exact)."""
    return np.ascontiguousarray(bits).view(np.float16).astype(np.float32)
