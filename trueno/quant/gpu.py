"""GPU quantized matvec straight from GGML blocks (``quant_matvec.cu`` beside it), and upload.

``prepare_gpu(blocks, ggml_type, shape)`` copies a quantized weight matrix to the device once
(the blocks exactly as in the GGUF file: no re-layout, no f32 copy) and returns an object whose
``.matvec(x)`` runs one CUDA kernel (one warp per row) and ``.matmul(X)`` one batched kernel
(prompt processing: the weights are read once per 8 vectors). ``upload_weights(tensors)`` does that
for a model's weights; see its docstring for what the LLM engine gets back.

Validation runs on the host before anything touches the device, so the checks (and their
errors) are the same with or without a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from trueno.errors import QuantError, UnsupportedError
from trueno.gguf.constants import BLOCK_LAYOUT, GGMLType
from trueno.quant.kernels import RECORDS
from trueno.trace import recorder

# GGML type -> kernel name in quant_matvec.cu, from the type's kernel record
KERNEL_OF: dict[GGMLType, str] = {t: r.cuda_kernel for t, r in RECORDS.items() if r.cuda_kernel}
# the batched kernels (prompt processing): Y (n, rows) = X (n, cols) @ W.T
MATMUL_KERNEL_OF: dict[GGMLType, str] = {
    t: k.replace("matvec", "matmul") for t, k in KERNEL_OF.items()
}
DENSE_TYPES = (GGMLType.F32, GGMLType.F16)
WARPS_PER_BLOCK = 4  # rows per thread block (one warp each)
NCOLS = 8  # vectors per batched launch column group (TRUENO_NCOLS in quant_matvec.cu)


def gpu_types() -> tuple[GGMLType, ...]:
    """GGML types with a GPU matvec (quantized kernels plus dense F32/F16 through cuBLAS)."""
    return (*KERNEL_OF, *DENSE_TYPES)


def check_blocks(blocks, ggml_type, shape) -> tuple[np.ndarray, GGMLType, int, int]:
    """Validate host blocks against the type and 2-D numpy-order ``shape`` (rows, cols);
    returns them as contiguous ``(rows, row_bytes)`` uint8 (or the float array for F32/F16)."""
    from trueno.quant.base import as_ggml_type, as_rows, get_format

    t = as_ggml_type(ggml_type)
    if t not in KERNEL_OF and t not in DENSE_TYPES:
        have = ", ".join(k.name for k in gpu_types())
        raise UnsupportedError(
            f"no GPU matvec for GGML type {t.name}; expected one of {have} "
            "(or prepare_gpu(..., dequantize=True) for a dense f32 copy)"
        )
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise QuantError(f"{t.name}: a GPU matrix needs a 2-D shape (rows, cols), got {shape}")
    rows_u8, shape = as_rows(blocks, get_format(t), shape)
    if t in DENSE_TYPES:
        dtype = np.float32 if t is GGMLType.F32 else np.float16
        return rows_u8.reshape(-1).view(dtype).reshape(shape), t, shape[0], shape[1]
    return rows_u8, t, shape[0], shape[1]


@dataclass(frozen=True)
class GpuQuantMatrix:
    """A (rows, cols) weight matrix resident on the GPU as GGML blocks."""

    blocks: object  # cupy uint8 (rows, row_bytes)
    ggml_type: GGMLType
    rows: int
    cols: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def nbytes(self) -> int:
        return int(self.blocks.nbytes)

    def matvec(self, x, out=None):
        """y = W @ x for a device (or host) float vector of length cols; y is a device f32
        vector of length rows (written into ``out`` when given)."""
        import cupy as cp

        from trueno.backends.cuda import function

        x = _as_device_vector(cp, x, self.cols, self.ggml_type.name)
        y = cp.empty(self.rows, dtype=cp.float32) if out is None else out
        if self.rows == 0:
            return y
        fn = function("quant_matvec", KERNEL_OF[self.ggml_type])
        grid = (-(-self.rows // WARPS_PER_BLOCK),)
        args = (self.blocks, x, y, np.int32(self.rows), np.int32(self.cols))
        if not recorder.ENABLED:
            fn(grid, (32 * WARPS_PER_BLOCK,), args)
            return y
        with recorder.span(
            f"matvec_{self.ggml_type.name.lower()}",
            category="op",
            backend="cupy",
            bytes=self.nbytes + 4 * (self.cols + self.rows),
            flops=2 * self.rows * self.cols,
            shape=str(self.shape),
        ):
            fn(grid, (32 * WARPS_PER_BLOCK,), args)
            cp.cuda.get_current_stream().synchronize()  # an honest span when tracing
        return y

    def matvec_into(self, x, out) -> None:
        """out = W @ x into a device f32 vector (the LLM decode loop's call)."""
        self.matvec(x, out)

    def matvecs_into(self, xs, out) -> None:
        """out[b] = W @ xs[b] for B device vectors (the batched decode step): one launch of
        the batched kernel, which reads W once per 8 vectors. Each vector's sum is its own
        (no vector's result depends on the others or on B), in the order of the matvec
        kernel's: lane l adds blocks l, l + 32, ... (a super-block's lanes for K types),
        then the warp sum. ``out`` may be a column slice of a wider array."""
        if out.flags.c_contiguous:
            self.matmul(xs, out=out)
        else:
            out[...] = self.matmul(xs)

    def matmul(self, xs, out=None):
        """Y = X @ W.T for a (n, cols) batch of vectors (prompt processing): one launch that
        reads W once per 8 vectors; Y is a device f32 (n, rows) array."""
        import cupy as cp

        from trueno.backends.cuda import function
        from trueno.device import to_device

        xs = to_device(xs, np.float32) if type(xs) is np.ndarray else xs
        if xs.ndim != 2 or xs.shape[1] != self.cols:
            raise QuantError(
                f"{self.ggml_type.name} matmul: X must have shape (n, {self.cols}),"
                f" got {tuple(xs.shape)}"
            )
        xs = cp.ascontiguousarray(xs, dtype=cp.float32)
        n = xs.shape[0]
        y = cp.empty((n, self.rows), dtype=cp.float32) if out is None else out
        if n == 0 or self.rows == 0:
            return y
        fn = function("quant_matvec", MATMUL_KERNEL_OF[self.ggml_type])
        grid = (-(-self.rows // WARPS_PER_BLOCK), -(-n // NCOLS))
        fn(
            grid,
            (32 * WARPS_PER_BLOCK,),
            (self.blocks, xs, y, np.int32(self.rows), np.int32(self.cols), np.int32(n)),
        )
        if recorder.ENABLED:
            cp.cuda.get_current_stream().synchronize()
        return y


@dataclass(frozen=True)
class GpuDenseMatrix:
    """A (rows, cols) float matrix on the GPU (F32/F16 tensors or dequantized ones); cuBLAS."""

    weight: object  # cupy float32 (rows, cols)
    ggml_type: GGMLType

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weight.shape)

    @property
    def nbytes(self) -> int:
        return int(self.weight.nbytes)

    def matvec(self, x, out=None):
        import cupy as cp

        x = _as_device_vector(cp, x, self.shape[1], self.ggml_type.name)
        return cp.matmul(self.weight, x, out=out)

    def matvec_into(self, x, out) -> None:
        self.matvec(x, out)

    def matvecs_into(self, xs, out) -> None:
        """out[b] = W @ xs[b], one cuBLAS matvec per vector: a gemm over all B rows may sum a
        row in another order than the matvec (its algorithm follows the shape), and a
        sequence must get the same tokens whatever else is batched with it."""
        for b in range(xs.shape[0]):
            self.matvec(xs[b], out[b])

    def matmul(self, xs):
        import cupy as cp

        from trueno.device import to_device

        xs = to_device(xs, np.float32) if type(xs) is np.ndarray else xs
        return cp.matmul(xs, self.weight.T)


def _as_device_vector(cp, x, n: int, what: str):
    from trueno.device import to_device

    x = to_device(x, np.float32) if type(x) is np.ndarray else x
    if x.ndim != 1 or x.shape[0] != n:
        raise QuantError(f"{what} matvec: x must have shape ({n},), got {tuple(x.shape)}")
    x = cp.ascontiguousarray(x, dtype=cp.float32)
    if x.data.ptr % 16:  # an offset view: the kernels assume aligned vectors
        x = x.copy()
    return x


def prepare_gpu(blocks, ggml_type, shape, dequantize: bool = False):
    """Put one weight matrix on the GPU. ``blocks``: host uint8 GGML blocks (or the F32/F16
    array) of a (rows, cols) matrix in numpy order. Returns an object with ``.matvec(x)``.

    A type without a GPU kernel raises UnsupportedError, unless ``dequantize=True``: then the
    host dequantizes it once (traced as a fallback span) and the GPU keeps f32 weights."""
    from trueno.device import cupy, to_device

    cupy()  # BackendUnavailableError (ImportError) naming the gpu extra, before any work
    try:
        host, t, rows, cols = check_blocks(blocks, ggml_type, shape)
    except UnsupportedError:
        if not dequantize:
            raise
        return _dequantized(blocks, ggml_type, shape)
    if t in DENSE_TYPES:
        return GpuDenseMatrix(to_device(host, np.float32), t)
    return GpuQuantMatrix(to_device(host), t, rows, cols)


def _dequantize_host(blocks, ggml_type, shape) -> np.ndarray:
    from trueno.quant.api import dequantize as dequantize_host
    from trueno.quant.base import as_ggml_type

    t = as_ggml_type(ggml_type)
    with recorder.span(
        "dequantize",
        category="fallback",
        backend="numpy(fallback from cupy)",
        ggml_type=t.name,
        wanted="cupy",
    ):
        return np.ascontiguousarray(dequantize_host(blocks, t, shape), dtype=np.float32)


def _dequantized(blocks, ggml_type, shape) -> GpuDenseMatrix:
    from trueno.device import to_device
    from trueno.quant.base import as_ggml_type

    return GpuDenseMatrix(
        to_device(_dequantize_host(blocks, ggml_type, shape)), as_ggml_type(ggml_type)
    )


def upload_weights(
    tensors: Mapping[str, object], dequantize_unsupported: bool = True
) -> dict[str, object]:
    """Put a model's weights on the GPU. ``tensors``: name -> a GGUF ``TensorInfo`` (anything
    with ``.data``, ``.ggml_type``, ``.shape`` in numpy order) or a host numpy array.

    Returns name -> GPU object: 2-D quantized/F16/F32 matrices become ``GpuQuantMatrix`` /
    ``GpuDenseMatrix`` (``.matvec(x)``, ``.matmul(X)``); 1-D tensors (norm weights, biases)
    become cupy float32 arrays. Types without a GPU kernel are dequantized on the host once
    (traced fallback) unless ``dequantize_unsupported`` is False (then UnsupportedError).
    The whole upload is one ``upload_weights`` span with the bytes copied."""
    out: dict[str, object] = {}
    with recorder.span("upload_weights", category="transfer", backend="cupy", tensors=len(tensors)):
        for name, tensor in tensors.items():
            out[name] = _upload_one(name, tensor, dequantize_unsupported)
    return out


def _upload_one(name: str, tensor, dequantize_unsupported: bool):
    from trueno.device import to_device

    if isinstance(tensor, np.ndarray) or not hasattr(tensor, "ggml_type"):
        return to_device(np.asarray(tensor, dtype=np.float32))
    shape = tuple(tensor.shape)
    t = GGMLType(tensor.ggml_type)
    if len(shape) == 1 or (len(shape) != 2 and t in DENSE_TYPES):
        if t in DENSE_TYPES:
            return to_device(np.asarray(tensor.data, dtype=np.float32).reshape(shape))
        return to_device(_dequantize_host(tensor.data, t, shape))
    if len(shape) != 2:
        raise QuantError(f"{name}: GPU upload takes 1-D or 2-D tensors, got shape {shape}")
    return prepare_gpu(tensor.data, t, shape, dequantize=dequantize_unsupported)


def block_bytes(ggml_type) -> int:
    return BLOCK_LAYOUT[GGMLType(ggml_type)][1]
