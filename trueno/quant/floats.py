"""F32, F16 and BF16: one element per "block". BF16 is the top half of an f32's bits."""

from __future__ import annotations

import numba
import numpy as np

from trueno.floats import bf16_to_f32, f16_to_f32, f32_to_bf16
from trueno.gguf.constants import GGMLType
from trueno.quant.base import Format, register


def dequantize_f32(blocks: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(blocks).view(np.float32).copy()


def quantize_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint8)


def dequantize_f16(blocks: np.ndarray) -> np.ndarray:
    return f16_to_f32(blocks)


def quantize_f16(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.astype(np.float16)).view(np.uint8)


def dequantize_bf16(blocks: np.ndarray) -> np.ndarray:
    return bf16_to_f32(blocks)


def quantize_bf16(x: np.ndarray) -> np.ndarray:
    """ggml_compute_fp32_to_bf16 (round to nearest even, NaN forced quiet), as bytes."""
    return f32_to_bf16(np.ascontiguousarray(x, dtype=np.float32)).view(np.uint8)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_f32_numba(blocks, f16, out):
    src = blocks.reshape(-1).view(np.float32)
    dst = out.reshape(-1)
    for i in range(src.size):
        dst[i] = src[i]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_f16_numba(blocks, f16, out):
    src = blocks.reshape(-1).view(np.uint16)
    dst = out.reshape(-1)
    for i in range(src.size):
        dst[i] = f16[src[i]]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dequantize_bf16_numba(blocks, f16, out):
    src = blocks.reshape(-1).view(np.uint16)
    dst = out.reshape(-1).view(np.uint32)
    for i in range(src.size):
        dst[i] = np.uint32(src[i]) << np.uint32(16)


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def matvec_f32_numba(w, x, f16, out):
    n = x.size
    for r in numba.prange(w.shape[0]):
        row = w[r].view(np.float32)
        acc = np.float32(0)
        for j in range(n):
            acc += row[j] * x[j]
        out[r] = acc


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def matvec_f16_numba(w, x, f16, out):
    n = x.size
    for r in numba.prange(w.shape[0]):
        row = w[r].view(np.uint16)
        acc = np.float32(0)
        for j in range(n):
            acc += f16[row[j]] * x[j]
        out[r] = acc


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def matvec_bf16_numba(w, x, f16, out):
    n = x.size
    for r in numba.prange(w.shape[0]):
        row = w[r].view(np.uint16)
        buf = np.empty(n, dtype=np.uint32)
        for j in range(n):
            buf[j] = np.uint32(row[j]) << np.uint32(16)
        vals = buf.view(np.float32)
        acc = np.float32(0)
        for j in range(n):
            acc += vals[j] * x[j]
        out[r] = acc


F32 = register(
    Format(GGMLType.F32, dequantize_f32, dequantize_f32_numba, quantize_f32, matvec_f32_numba)
)
F16 = register(
    Format(GGMLType.F16, dequantize_f16, dequantize_f16_numba, quantize_f16, matvec_f16_numba)
)
BF16 = register(
    Format(GGMLType.BF16, dequantize_bf16, dequantize_bf16_numba, quantize_bf16, matvec_bf16_numba)
)
