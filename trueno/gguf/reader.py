"""GGUF reader: memory-maps a file, checks every header field against the bytes that remain
before allocating anything, and returns zero-copy, read-only numpy views of tensor data.

Errors are :class:`~trueno.errors.GGUFError` naming the field, its byte offset and the value.
"""

from __future__ import annotations

import mmap
import os
from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trueno import trace
from trueno.errors import GGUFError
from trueno.gguf.constants import (
    BLOCK_LAYOUT,
    DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGUF_MAGIC_BIG_ENDIAN,
    MAX_DIMS,
    PLAIN_DTYPE,
    SUPPORTED_VERSIONS,
    VALUE_DTYPE,
    GGMLType,
    GGUFValueType,
    Keys,
)
from trueno.gguf.values import SCALAR, U32, U64, GGUFStringArray

__all__ = ["GGUFFile", "GGUFStringArray", "TensorInfo", "load"]

MAX_ARRAY_DEPTH = 8  # arrays of arrays nested deeper than this are refused (no recursion bombs)
MAX_NESTED_ITEMS = 1 << 16  # sub-arrays per array: each costs a Python object, so it is capped
INT64_MAX = 2**63 - 1
_VALUE_TYPES = {int(t): t for t in GGUFValueType}
_GGML_TYPES = {int(t): t for t in GGMLType if t in BLOCK_LAYOUT}
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, smallest value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset
_MIN_ELEM_BYTES = {GGUFValueType.STRING: 8, GGUFValueType.ARRAY: 4 + 8}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: shape in numpy order (reversed GGUF ne), absolute data offset, zero-copy view.

    ``data`` is float32/float16/float64/int for plain types, raw uint16 bits for BF16, and for
    block-quantized types a uint8 array of shape ``(*shape[:-1], bytes_per_row)``.
    """

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLType
    offset: int
    nbytes: int
    n_elements: int
    data: np.ndarray = field(repr=False, compare=False)


class _Cursor:
    """Reads little-endian fields from the mapped bytes; every read is bounds-checked."""

    def __init__(self, buf: mmap.mmap, size: int) -> None:
        self.buf, self.size, self.pos = buf, size, 0

    def need(self, n: int, what: str, at: int | None = None) -> None:
        remaining = self.size - self.pos
        if n > remaining:
            at = self.pos if at is None else at
            raise GGUFError(
                f"{what} at offset {at}: needs {n} bytes but only {remaining} "
                f"remain in the {self.size}-byte file"
            )

    def u32(self, what: str) -> int:
        self.need(4, what)
        v = U32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        v = U64.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        return v

    def count(self, what: str, min_item_bytes: int, unit: str = "items") -> int:
        """A u64 element count, refused if that many items cannot fit in the rest of the file."""
        at = self.pos
        n = self.u64(what)
        if n * min_item_bytes > self.size - self.pos:
            each = f" of >= {min_item_bytes} bytes" if min_item_bytes > 1 else ""
            raise GGUFError(
                f"{what} at offset {at}: {n} {unit}{each} do not fit in the "
                f"{self.size - self.pos} bytes remaining"
            )
        return n

    def string(self, what: str) -> str:
        at = self.pos
        n = self.count(f"{what} length", 1, "bytes")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GGUFError(
                f"{what} at offset {at}: invalid UTF-8 ({e.reason} at byte {e.start}): {raw[:40]!r}"
            ) from None

    def value_type(self, what: str) -> GGUFValueType:
        at = self.pos
        raw = self.u32(what)
        vt = _VALUE_TYPES.get(raw)
        if vt is None:
            raise GGUFError(
                f"{what} at offset {at}: unknown value type {raw} (expected 0..{max(_VALUE_TYPES)})"
            )
        return vt


class _Parser(_Cursor):
    def __init__(self, buf: mmap.mmap, u8: np.ndarray, size: int) -> None:
        super().__init__(buf, size)
        self.u8 = u8

    def value(self, vt: GGUFValueType, what: str, depth: int = 0) -> tuple[Any, Any]:
        """One value of type ``vt``: returns (python value, type info)."""
        if vt == GGUFValueType.STRING:
            return self.string(what), vt
        if vt == GGUFValueType.ARRAY:
            return self.array(what, depth)
        st = SCALAR[vt]
        self.need(st.size, what)
        v = st.unpack_from(self.buf, self.pos)[0]
        self.pos += st.size
        return (bool(v) if vt == GGUFValueType.BOOL else v), vt

    def array(self, what: str, depth: int) -> tuple[Any, tuple]:
        if depth >= MAX_ARRAY_DEPTH:
            raise GGUFError(
                f"{what} at offset {self.pos}: arrays nested {depth + 1} deep "
                f"(at most {MAX_ARRAY_DEPTH} supported)"
            )
        et = self.value_type(f"{what} element type")
        if et in VALUE_DTYPE:
            dt = np.dtype(VALUE_DTYPE[et])
            n = self.count(f"{what} element count", dt.itemsize)
            arr = (
                np.frombuffer(self.u8, dtype=dt, count=n, offset=self.pos) if n else np.empty(0, dt)
            )
            self.pos += n * dt.itemsize
            return (arr != 0 if et == GGUFValueType.BOOL else arr), (GGUFValueType.ARRAY, et)
        at = self.pos
        n = self.count(f"{what} element count", _MIN_ELEM_BYTES[et])
        if et == GGUFValueType.STRING:
            return self.string_array(n, what), (GGUFValueType.ARRAY, et)
        if n > MAX_NESTED_ITEMS:
            raise GGUFError(
                f"{what} element count at offset {at}: {n} nested arrays "
                f"(at most {MAX_NESTED_ITEMS} supported)"
            )
        items, sub = [], (GGUFValueType.ARRAY,)
        for i in range(n):
            v, t = self.array(f"{what}[{i}]", depth + 1)
            items.append(v)
            if i == 0:
                sub = t
        return items, (GGUFValueType.ARRAY, *sub)

    def string_array(self, n: int, what: str) -> GGUFStringArray:
        """Scan ``n`` (u64 length, bytes) records: one tight loop over offsets, no str objects."""
        buf, end, p = self.buf, self.size, self.pos
        unpack = U64.unpack_from
        starts = array("q")
        push = starts.append
        for i in range(n):
            if end - p < 8:
                raise GGUFError(
                    f"{what}[{i}] length at offset {p}: needs 8 bytes but only {end - p} remain"
                )
            length = unpack(buf, p)[0]
            p += 8
            if length > end - p:
                raise GGUFError(
                    f"{what}[{i}] length at offset {p - 8}: string of {length} "
                    f"bytes does not fit in the {end - p} bytes remaining"
                )
            push(p)
            p += length
        self.pos = p
        s = np.frombuffer(starts, dtype=np.int64) if n else np.empty(0, np.int64)
        e = np.empty_like(s)
        if n:
            e[:-1] = s[1:] - 8
            e[-1] = p
        return GGUFStringArray(self.u8, s, e, what)


class GGUFFile:
    """An opened GGUF file. Use :func:`load`; close with :meth:`close` or a ``with`` block."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 4 + 4 + 8 + 8:
                raise GGUFError(
                    f"header at offset 0: file has {size} bytes, a GGUF header needs at least 24"
                )
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.size = size
        self._mm: mmap.mmap | None = mm
        self._u8: np.ndarray | None = np.frombuffer(mm, dtype=np.uint8)
        try:
            with trace.span("gguf.load", category="gguf", bytes=size):
                self._parse()
        except BaseException:
            self.close()
            raise

    def _mapped(self) -> tuple[mmap.mmap, np.ndarray]:
        if self._mm is None or self._u8 is None:
            raise GGUFError(f"{self.path}: the file is closed")
        return self._mm, self._u8

    def _parse(self) -> None:
        mm, u8 = self._mapped()
        p = _Parser(mm, u8, self.size)
        magic = mm[0:4]
        p.pos = 4
        if magic != GGUF_MAGIC:
            if magic == GGUF_MAGIC_BIG_ENDIAN:
                raise GGUFError("magic at offset 0: big-endian GGUF is not supported")
            raise GGUFError(f"magic at offset 0: expected {GGUF_MAGIC!r}, found {magic!r}")
        version = p.u32("version")
        if version not in SUPPORTED_VERSIONS:
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            if version & 0xFFFF == 0 and 0 < swapped < 0x10000:
                raise GGUFError(
                    f"version at offset 4: big-endian GGUF is not supported "
                    f"(version field reads {version:#010x}, {swapped} byte-swapped)"
                )
            raise GGUFError(
                f"version at offset 4: unsupported GGUF version {version} "
                f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})"
            )
        self.version = version
        n_tensors = p.count("tensor_count", _MIN_TENSOR_INFO_BYTES)
        n_kv = p.count("metadata_kv_count", _MIN_KV_BYTES)
        self.metadata: dict[str, Any] = {}
        self.metadata_types: dict[str, Any] = {}
        align_at = None
        for i in range(n_kv):
            at = p.pos
            key = p.string(f"metadata[{i}] key")
            if key in self.metadata:
                raise GGUFError(f"metadata[{i}] key at offset {at}: duplicate key {key!r}")
            vt_at = p.pos
            vt = p.value_type(f"metadata {key!r} value type")
            self.metadata[key], self.metadata_types[key] = p.value(vt, f"metadata {key!r}")
            if key == Keys.ALIGNMENT:
                align_at = vt_at
        self.alignment = self._alignment(align_at)
        infos = [self._tensor_info(p, i) for i in range(n_tensors)]
        self.data_offset = -(-p.pos // self.alignment) * self.alignment
        self.tensors: dict[str, TensorInfo] = {}
        for info in infos:
            t = self._tensor(*info)
            if t.name in self.tensors:
                raise GGUFError(f"tensor name at offset {info[-1]}: duplicate tensor {t.name!r}")
            self.tensors[t.name] = t

    def _alignment(self, at: int | None) -> int:
        if at is None:
            return DEFAULT_ALIGNMENT
        vt, v = self.metadata_types[Keys.ALIGNMENT], self.metadata[Keys.ALIGNMENT]
        if vt != GGUFValueType.UINT32:
            raise GGUFError(
                f"metadata {Keys.ALIGNMENT!r} at offset {at}: type {vt!r}, expected UINT32"
            )
        if v == 0 or v & (v - 1):
            raise GGUFError(
                f"metadata {Keys.ALIGNMENT!r} at offset {at}: alignment {v} is not a power of two"
            )
        return v

    @staticmethod
    def _tensor_info(p: _Parser, i: int) -> tuple:
        at = p.pos
        name = p.string(f"tensor[{i}] name")
        what = f"tensor {name!r}"
        dims_at = p.pos
        n_dims = p.u32(f"{what} n_dims")
        if n_dims > MAX_DIMS:
            raise GGUFError(
                f"{what} n_dims at offset {dims_at}: {n_dims} dimensions (at most {MAX_DIMS})"
            )
        p.need(8 * n_dims, f"{what} dims")
        ne = [d[0] for d in U64.iter_unpack(p.buf[p.pos : p.pos + 8 * n_dims])]
        n_el = 1
        for j, d in enumerate(ne):
            if d == 0 or d > INT64_MAX:
                raise GGUFError(
                    f"{what} ne[{j}] at offset {p.pos + 8 * j}: dimension "
                    f"{d if d <= INT64_MAX else d - 2**64} (expected 1..{INT64_MAX})"
                )
            n_el *= d
            if n_el > INT64_MAX:
                raise GGUFError(
                    f"{what} ne[{j}] at offset {p.pos + 8 * j}: element count "
                    f"overflows int64 (dims {ne})"
                )
        p.pos += 8 * n_dims
        type_at = p.pos
        raw = p.u32(f"{what} type")
        gt = _GGML_TYPES.get(raw)
        if gt is None:
            raise GGUFError(f"{what} type at offset {type_at}: unknown GGML type {raw}")
        block = BLOCK_LAYOUT[gt][0]
        ne0 = ne[0] if ne else 1
        if ne0 % block:
            raise GGUFError(
                f"{what} ne[0] at offset {dims_at + 4}: row of {ne0} elements is not "
                f"a multiple of the {gt.name} block size {block}"
            )
        off_at = p.pos
        rel = p.u64(f"{what} offset")
        return name, tuple(reversed(ne)), gt, n_el, rel, off_at, at

    def _tensor(
        self,
        name: str,
        shape: tuple[int, ...],
        gt: GGMLType,
        n_el: int,
        rel: int,
        off_at: int,
        at: int,
    ) -> TensorInfo:
        if rel % self.alignment:
            raise GGUFError(
                f"tensor {name!r} offset at offset {off_at}: data offset {rel} is "
                f"not a multiple of the alignment {self.alignment}"
            )
        block, block_bytes = BLOCK_LAYOUT[gt]
        nbytes = n_el // block * block_bytes
        start = self.data_offset + rel
        if start + nbytes > self.size:
            raise GGUFError(
                f"tensor {name!r} offset at offset {off_at}: data [{start}, "
                f"{start + nbytes}) lies outside the {self.size}-byte file"
            )
        dt = PLAIN_DTYPE.get(gt)
        _, u8 = self._mapped()
        if dt is not None:
            data = np.frombuffer(u8, dtype=dt, count=n_el, offset=start).reshape(shape)
        else:
            row = (shape[-1] // block) * block_bytes
            data = np.frombuffer(u8, dtype=np.uint8, count=nbytes, offset=start)
            data = data.reshape(*shape[:-1], row)
        return TensorInfo(name, shape, gt, start, nbytes, n_el, data)

    def release(self, info: TensorInfo) -> None:
        """Tell the kernel this tensor's pages are not needed now (``MADV_DONTNEED`` on the
        whole pages inside its bytes), for a tensor the caller has copied: they leave the
        process's resident set and stay in the page cache, read back on a later access (the
        mapping is read-only and file-backed: nothing is lost)."""
        mm, _ = self._mapped()
        page = mmap.PAGESIZE
        lo = -(-info.offset // page) * page
        hi = (info.offset + info.nbytes) // page * page
        if hi > lo and hasattr(mmap, "MADV_DONTNEED"):
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def close(self) -> None:
        """Drop this file's mapping; views still held by callers keep it alive until freed."""
        mm, self._mm, self._u8 = self._mm, None, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # tensor/metadata views are still alive: unmapped when they are freed

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"GGUFFile({self.path!r}, version={self.version}, "
            f"{len(self.metadata)} metadata keys, {len(self.tensors)} tensors)"
        )


def load(path: str | os.PathLike) -> GGUFFile:
    """Open and validate a GGUF file (versions 2 and 3, little-endian)."""
    return GGUFFile(path)
