"""Public entry points: dequantize, quantize and matvec straight from GGML blocks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from time import perf_counter_ns

import numpy as np

from trueno.errors import DTypeError, QuantError
from trueno.floats import bf16_to_f32
from trueno.gguf.constants import PLAIN_DTYPE, GGMLType
from trueno.gguf.reader import TensorInfo
from trueno.quant.base import F16_TO_F32, as_ggml_type, as_rows, get_format, row_bytes
from trueno.trace import recorder

# a GGML type as GGMLType, its int value or its name ("Q4_0"); a tensor shape in numpy order
GGMLTypeLike = GGMLType | int | str
Shape = Sequence[int]

NUMBA_MIN_ELEMENTS = 1 << 16  # below this the numpy reference is faster than a numba call


def dequantize(blocks: np.ndarray, ggml_type: GGMLTypeLike, shape: Shape) -> np.ndarray:
    """Expand GGML blocks to a float32 array of ``shape`` (numpy order, last dim = row)."""
    fmt = get_format(ggml_type)
    rows, shape = as_rows(blocks, fmt, shape)
    n_blocks = rows.size // fmt.block_bytes
    flat = rows.reshape(n_blocks, fmt.block_bytes)
    if rows.size * 8 >= NUMBA_MIN_ELEMENTS and fmt.dequantize_numba is not None:
        out = np.empty((n_blocks, fmt.block_elems), dtype=np.float32)
        fmt.dequantize_numba(flat, F16_TO_F32, out)
    else:
        out = fmt.dequantize_ref(flat)
    return out.reshape(shape)


def dequantize_tensor(info: TensorInfo) -> np.ndarray:
    """A GGUF tensor (``GGUFFile.tensors[name]``) as a new float32 array of its shape."""
    if info.ggml_type == GGMLType.BF16:
        return bf16_to_f32(info.data).reshape(info.shape)
    if info.ggml_type in PLAIN_DTYPE:
        return np.asarray(info.data).astype(np.float32).reshape(info.shape)
    return dequantize(info.data, info.ggml_type, info.shape)


def quantize(x: np.ndarray, ggml_type: GGMLTypeLike) -> np.ndarray:
    """Quantize float rows to GGML blocks: uint8 of shape (*x.shape[:-1], bytes_per_row)."""
    fmt = get_format(ggml_type)
    if fmt.quantize_ref is None:
        from trueno.errors import UnsupportedError

        raise UnsupportedError(f"quantize to {fmt.name} is not implemented")
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"quantize {fmt.name}: x must be a float array, got {x.dtype}")
    if x.ndim == 0 or x.shape[-1] % fmt.block_elems:
        raise QuantError(
            f"quantize {fmt.name}: row length {x.shape[-1] if x.ndim else None} "
            f"is not a multiple of the block size {fmt.block_elems}"
        )
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    blocks = fmt.quantize_ref(x32.reshape(-1, fmt.block_elems))
    return blocks.reshape(*x.shape[:-1], row_bytes(fmt, x.shape[-1]))


def check_x(name: str, x: np.ndarray, n_cols: int) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"{name}: x must be a float array, got {x.dtype}")
    if x.ndim != 1 or x.shape[0] != n_cols:
        raise QuantError(f"{name}: x must have shape ({n_cols},), got {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def matvec(blocks: np.ndarray, ggml_type: GGMLTypeLike, shape: Shape, x: np.ndarray) -> np.ndarray:
    """y = W @ x computed from the blocks of W (rows, cols) without an f32 copy of W (one-off:
    no re-layout; keep a :func:`prepare` d weight for repeated calls)."""
    from trueno.quant.prepared import prepare

    t = as_ggml_type(ggml_type)
    return prepare(blocks, t, shape, relayout=False).matvec(x)


def record(
    name: str, backend: str, shape: Iterable[int], fmt_name: str, nbytes: int, flops: int, t0: int
) -> None:
    if recorder.ENABLED:
        recorder.record_op(
            name, backend, tuple(shape), fmt_name, nbytes, flops, t0, perf_counter_ns() - t0
        )
