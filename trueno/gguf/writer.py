"""GGUF writer: an explicit state machine (header -> metadata -> tensor infos -> data) as in
gguf-py. Metadata is encoded (and checked) when added; tensor data is converted one tensor at a
time while it is streamed to the file, so no copy of the model is held."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from math import prod
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np

from trueno.errors import DTypeError, GGUFError
from trueno.floats import f32_to_bf16
from trueno.gguf.constants import (
    BLOCK_LAYOUT,
    DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    MAX_DIMS,
    MAX_NAME,
    PLAIN_DTYPE,
    GGMLType,
    GGUFValueType,
    Keys,
    tensor_nbytes,
)
from trueno.gguf.values import U32, U64, encode_value, infer_type, normalize_type

__all__ = ["GGUFWriter", "WriterState", "infer_type", "write_gguf"]

GGUF_VERSION = 3
V = GGUFValueType
_NP_GGML_TYPE: dict[np.dtype, GGMLType] = {
    np.dtype(dt): gt for gt, dt in PLAIN_DTYPE.items() if gt != GGMLType.BF16
}


class WriterState(Enum):
    EMPTY = "collecting metadata and tensors, nothing written"
    HEADER = "header written"
    KV_DATA = "metadata written"
    TI_DATA = "tensor infos written"
    WEIGHTS = "writing tensor data"
    CLOSED = "closed"


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]  # numpy order
    ggml_type: GGMLType
    nbytes: int
    source: np.ndarray | None  # None: declared with add_tensor_info, data via write_tensor_data


# ---------------------------------------------------------------- the writer


class GGUFWriter:
    """Write a GGUF v3 file. Add metadata and tensors, then :meth:`write` (or leave a ``with``
    block cleanly, which writes). The stages can also be driven one by one, as in gguf-py."""

    def __init__(
        self, path: str | os.PathLike, arch: str | None = None, alignment: int = DEFAULT_ALIGNMENT
    ) -> None:
        self.path = os.fspath(path)
        self.state = WriterState.EMPTY
        self.alignment = DEFAULT_ALIGNMENT
        self._kv: dict[str, bytes] = {}
        self._tensors: dict[str, _Tensor] = {}
        self._queue: list[_Tensor] = []
        self._f: BinaryIO | None = None
        if arch is not None:
            self.add_string(Keys.ARCHITECTURE, arch)
        if alignment != DEFAULT_ALIGNMENT:
            self.add_uint32(Keys.ALIGNMENT, alignment)

    def _expect(self, method: str, *states: WriterState) -> None:
        if self.state not in states:
            want = " or ".join(f"{s.name} ({s.value})" for s in states)
            raise GGUFError(
                f"GGUFWriter.{method}: expected state {want}, but the writer is in "
                f"state {self.state.name} ({self.state.value})"
            )

    # ---- metadata
    def add_key_value(self, key: str, value: Any, value_type: Any = None) -> None:
        """Add one metadata pair; ``value_type`` is a GGUFValueType or, for arrays, a chain
        ``(ARRAY, element_type, ...)`` as in :attr:`GGUFFile.metadata_types`."""
        self._expect("add_key_value", WriterState.EMPTY)
        if not isinstance(key, str) or not key:
            raise GGUFError(f"metadata key must be a non-empty str, got {key!r}")
        if key in self._kv:
            raise GGUFError(f"duplicate metadata key {key!r}")
        if key == Keys.ALIGNMENT:
            value_type = V.UINT32 if value_type is None else value_type
            if (
                GGUFValueType(value_type) != V.UINT32
                or not isinstance(value, (int, np.integer))
                or value <= 0
                or value & (value - 1)
            ):
                raise GGUFError(f"{key} must be a UINT32 power of two, got {value!r}")
            self.alignment = int(value)
        chain = normalize_type(value, value_type)
        self._kv[key] = U32.pack(chain[0]) + encode_value(value, chain)

    def add_uint8(self, key: str, value: int) -> None:
        self.add_key_value(key, value, V.UINT8)

    def add_int8(self, key: str, value: int) -> None:
        self.add_key_value(key, value, V.INT8)

    def add_uint16(self, key: str, value: int) -> None:
        self.add_key_value(key, value, V.UINT16)

    def add_int16(self, key: str, value: int) -> None:
        self.add_key_value(key, value, V.INT16)

    def add_uint32(self, key: str, value: int) -> None:
        self.add_key_value(key, value, V.UINT32)

    def add_int32(self, key: str, value: int) -> None:
        self.add_key_value(key, value, V.INT32)

    def add_uint64(self, key: str, value: int) -> None:
        self.add_key_value(key, value, V.UINT64)

    def add_int64(self, key: str, value: int) -> None:
        self.add_key_value(key, value, V.INT64)

    def add_float32(self, key: str, value: float) -> None:
        self.add_key_value(key, value, V.FLOAT32)

    def add_float64(self, key: str, value: float) -> None:
        self.add_key_value(key, value, V.FLOAT64)

    def add_bool(self, key: str, value: bool) -> None:
        self.add_key_value(key, value, V.BOOL)

    def add_string(self, key: str, value: str) -> None:
        self.add_key_value(key, value, V.STRING)

    def add_array(
        self,
        key: str,
        values: Sequence[Any] | np.ndarray,
        element_type: GGUFValueType | tuple | None = None,
    ) -> None:
        """An array; ``element_type`` (or a chain for nested arrays) is inferred when omitted."""
        if element_type is None:
            chain: Any = V.ARRAY
        else:
            inner = element_type if isinstance(element_type, (tuple, list)) else (element_type,)
            chain = (V.ARRAY, *inner)
        self.add_key_value(key, values, chain)

    # ---- tensors
    def add_tensor(
        self,
        name: str,
        array: np.ndarray,
        ggml_type: GGMLType | None = None,
        raw_shape: Sequence[int] | None = None,
    ) -> None:
        """Add a tensor. float32/float16/float64/int arrays are stored as they are; with
        ``ggml_type`` BF16, floats are converted when written; for a quantized type the data
        are uint8 blocks, already encoded (``trueno.quant.quantize``), and uint16 bits for
        BF16 are taken as encoded too (``raw_shape`` = logical numpy-order shape, inferred
        from the byte shape when omitted)."""
        self._expect("add_tensor", WriterState.EMPTY)
        arr = np.asarray(array)
        if ggml_type is None:
            default = _NP_GGML_TYPE.get(arr.dtype.newbyteorder("<"))
            if default is None:
                raise DTypeError(
                    f"tensor {name!r}: dtype {arr.dtype} has no default GGML type "
                    f"(pass ggml_type=, e.g. Q4_K for uint8 blocks)"
                )
            gt = default
        else:
            gt = _ggml_type(ggml_type, name)
        if arr.dtype.kind not in "fiub":
            raise DTypeError(f"tensor {name!r}: dtype {arr.dtype} cannot be stored")
        _check_encodable(name, arr, gt)
        block, block_bytes = BLOCK_LAYOUT[gt]
        if raw_shape is not None:
            shape = tuple(int(d) for d in raw_shape)
        elif _encoded(arr, gt) and block > 1:
            if arr.ndim == 0 or arr.shape[-1] % block_bytes:
                raise GGUFError(
                    f"tensor {name!r}: {gt.name} rows of {arr.shape[-1:]} bytes are "
                    f"not whole {block_bytes}-byte blocks"
                )
            shape = (*arr.shape[:-1], arr.shape[-1] // block_bytes * block)
        else:
            shape = tuple(arr.shape)
        t = self._declare(name, shape, gt)
        if _encoded(arr, gt) and arr.nbytes != t.nbytes:
            raise GGUFError(
                f"tensor {name!r}: {arr.nbytes} bytes of {gt.name} blocks given, "
                f"shape {shape} needs {t.nbytes}"
            )
        if not _encoded(arr, gt) and arr.size != prod(shape):
            raise GGUFError(f"tensor {name!r}: {arr.size} elements do not fill shape {shape}")
        t.source = arr

    def add_tensor_info(self, name: str, shape: Sequence[int], ggml_type: GGMLType) -> None:
        """Declare a tensor whose data comes later through :meth:`write_tensor_data`."""
        self._expect("add_tensor_info", WriterState.EMPTY)
        self._declare(name, tuple(int(d) for d in shape), _ggml_type(ggml_type, name))

    def _declare(self, name: str, shape: tuple[int, ...], gt: GGMLType) -> _Tensor:
        if not isinstance(name, str) or not name:
            raise GGUFError(f"tensor name must be a non-empty str, got {name!r}")
        if len(name.encode("utf-8")) >= MAX_NAME:
            raise GGUFError(
                f"tensor name {name!r} is {len(name.encode())} bytes; at most {MAX_NAME - 1}"
            )
        if name in self._tensors:
            raise GGUFError(f"duplicate tensor name {name!r}")
        if len(shape) > MAX_DIMS or any(d < 1 for d in shape):
            raise GGUFError(f"tensor {name!r}: shape {shape} needs 0..{MAX_DIMS} dims, each >= 1")
        block = BLOCK_LAYOUT[gt][0]
        if (shape[-1] if shape else 1) % block:
            raise GGUFError(
                f"tensor {name!r}: row of {shape[-1] if shape else 1} elements is not "
                f"a multiple of the {gt.name} block size {block}"
            )
        t = _Tensor(name, shape, gt, tensor_nbytes(gt, prod(shape)), None)
        self._tensors[name] = t
        return t

    # ---- stages
    def write_header_to_file(self) -> None:
        self._expect("write_header_to_file", WriterState.EMPTY)
        self._f = open(self.path, "wb")
        self._out.write(
            GGUF_MAGIC
            + U32.pack(GGUF_VERSION)
            + U64.pack(len(self._tensors))
            + U64.pack(len(self._kv))
        )
        self.state = WriterState.HEADER

    def write_kv_data_to_file(self) -> None:
        self._expect("write_kv_data_to_file", WriterState.HEADER)
        for key, payload in self._kv.items():
            self._out.write(encode_value(key, (V.STRING,)))
            self._out.write(payload)
        self.state = WriterState.KV_DATA

    def write_ti_data_to_file(self) -> None:
        self._expect("write_ti_data_to_file", WriterState.KV_DATA)
        rel = 0
        for t in self._tensors.values():
            info = [encode_value(t.name, (V.STRING,)), U32.pack(len(t.shape))]
            info += [U64.pack(d) for d in reversed(t.shape)]
            info += [U32.pack(t.ggml_type), U64.pack(rel)]
            self._out.write(b"".join(info))
            rel += _pad(t.nbytes, self.alignment)
        self._write_padding()
        self._queue = list(self._tensors.values())
        self.state = WriterState.TI_DATA

    def write_tensor_data(self, array: np.ndarray | None = None) -> None:
        """Write the next tensor's data (``array`` for one declared by add_tensor_info)."""
        self._expect("write_tensor_data", WriterState.TI_DATA, WriterState.WEIGHTS)
        if not self._queue:
            raise GGUFError("write_tensor_data: every declared tensor is already written")
        t = self._queue.pop(0)
        src = t.source if array is None else np.asarray(array)
        if src is None:
            raise GGUFError(f"tensor {t.name!r} was declared with add_tensor_info: pass its data")
        t.source = None  # drop our reference as soon as the bytes are out
        payload = _payload(t, src)
        self._out.write(payload.data)  # contiguous bytes: written without a copy
        self._write_padding()
        self.state = WriterState.WEIGHTS

    def write_tensors_to_file(self) -> None:
        self._expect("write_tensors_to_file", WriterState.TI_DATA, WriterState.WEIGHTS)
        while self._queue:
            self.write_tensor_data()
        self.state = WriterState.WEIGHTS

    def write(self) -> None:
        """Run every stage not yet run, then close the file. On failure (a tensor that will not
        convert, a full disk) the partial file is removed and the error re-raised."""
        try:
            if self.state == WriterState.EMPTY:
                self.write_header_to_file()
            if self.state == WriterState.HEADER:
                self.write_kv_data_to_file()
            if self.state == WriterState.KV_DATA:
                self.write_ti_data_to_file()
            self.write_tensors_to_file()
        except BaseException:
            self._abort()
            raise
        self.close()

    def _abort(self) -> None:
        """Close without finishing; remove the partial file this writer created."""
        f, self._f, self.state = self._f, None, WriterState.CLOSED
        if f is not None:
            f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def close(self) -> None:
        """Close the file. Raises if declared tensors were never written (file incomplete)."""
        f, self._f = self._f, None
        pending = (
            [t.name for t in self._queue]
            if self.state in (WriterState.TI_DATA, WriterState.WEIGHTS)
            else list(self._tensors)
        )
        incomplete = f is not None and (
            self.state in (WriterState.HEADER, WriterState.KV_DATA)
            or bool(pending and self.state != WriterState.EMPTY)
        )
        self.state = WriterState.CLOSED
        if f is not None:
            f.close()
        if incomplete:
            raise GGUFError(
                f"GGUFWriter.close: file {self.path} is incomplete: "
                f"{len(pending)} tensors never written {pending[:3]}"
            )

    def _write_padding(self) -> None:
        n = -self._out.tell() % self.alignment
        if n:
            self._out.write(b"\0" * n)

    @property
    def _out(self) -> BinaryIO:
        """The open file (a state check has already refused a call before ``write``)."""
        if self._f is None:
            raise GGUFError(f"GGUFWriter: {self.path} is not open for writing")
        return self._f

    def __enter__(self) -> GGUFWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self.state != WriterState.CLOSED:
            self.write()
        else:
            self._abort()


def _pad(n: int, align: int) -> int:
    return -(-n // align) * align


def _ggml_type(ggml_type: Any, name: str) -> GGMLType:
    try:
        gt = GGMLType(ggml_type)
    except ValueError:
        raise GGUFError(f"tensor {name!r}: unknown GGML type {ggml_type!r}") from None
    if gt not in BLOCK_LAYOUT:
        raise GGUFError(f"tensor {name!r}: GGML type {gt.name} has no block layout")
    return gt


def _encoded(arr: np.ndarray, gt: GGMLType) -> bool:
    """Is ``arr`` already in ``gt``'s storage form (blocks / bf16 bits)?"""
    if gt == GGMLType.BF16:
        return arr.dtype == np.uint16
    return gt not in PLAIN_DTYPE and arr.dtype == np.uint8


def _check_encodable(name: str, arr: np.ndarray, gt: GGMLType) -> None:
    """The format layer encodes no blocks: quantizing is trueno.quant's (as in gguf-py)."""
    if not _encoded(arr, gt) and gt != GGMLType.BF16 and gt not in PLAIN_DTYPE:
        raise GGUFError(
            f"tensor {name!r}: {arr.dtype} data for {gt.name}: quantize it first "
            f"(trueno.quant.quantize) and pass the uint8 blocks"
        )


def _payload(t: _Tensor, src: np.ndarray) -> np.ndarray:
    """``src`` converted to the contiguous little-endian bytes of tensor ``t``."""
    gt = t.ggml_type
    _check_encodable(t.name, src, gt)
    if _encoded(src, gt):
        out = src
    elif gt == GGMLType.BF16:
        out = f32_to_bf16(src)
    else:
        out = src.astype(PLAIN_DTYPE[gt], copy=False)
    out = np.ascontiguousarray(out)
    if out.nbytes != t.nbytes:
        raise GGUFError(
            f"tensor {t.name!r}: data has {out.nbytes} bytes, {gt.name} shape "
            f"{t.shape} needs {t.nbytes}"
        )
    return out.reshape(-1).view(np.uint8)


def write_gguf(
    path: str | os.PathLike,
    metadata: Mapping[str, Any],
    tensors: Mapping[str, Any],
    arch: str | None = None,
    *,
    metadata_types: Mapping[str, Any] | None = None,
    alignment: int = DEFAULT_ALIGNMENT,
) -> None:
    """Write a whole file at once. ``tensors`` maps name -> ndarray, ``(array, ggml_type)`` or
    ``(blocks, ggml_type, shape)``; value types are inferred (see :func:`infer_type`) unless
    given in ``metadata_types`` (same form as :attr:`GGUFFile.metadata_types`)."""
    types = metadata_types or {}
    w = GGUFWriter(path, arch if Keys.ARCHITECTURE not in metadata else None, alignment)
    for key, value in metadata.items():
        if key == Keys.ALIGNMENT and alignment != DEFAULT_ALIGNMENT:
            continue  # already set through the constructor
        w.add_key_value(key, value, types.get(key))
    for name, t in tensors.items():
        if isinstance(t, tuple):
            w.add_tensor(name, t[0], t[1], t[2] if len(t) > 2 else None)
        else:
            w.add_tensor(name, t)
    w.write()
