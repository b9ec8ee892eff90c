"""GGUF metadata values: the lazy string-array sequence the reader returns, and the typing and
encoding rules the writer applies (python/numpy value -> value type chain -> bytes)."""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

from trueno.errors import DTypeError, GGUFError
from trueno.gguf.constants import VALUE_DTYPE, GGUFValueType

__all__ = ["GGUFStringArray", "encode_value", "infer_type", "normalize_type"]

V = GGUFValueType
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
SCALAR = {
    vt: struct.Struct("<" + c)
    for vt, c in (
        (V.UINT8, "B"),
        (V.INT8, "b"),
        (V.UINT16, "H"),
        (V.INT16, "h"),
        (V.UINT32, "I"),
        (V.INT32, "i"),
        (V.FLOAT32, "f"),
        (V.BOOL, "B"),
        (V.UINT64, "Q"),
        (V.INT64, "q"),
        (V.FLOAT64, "d"),
    )
}
_NP_VALUE_TYPE: dict[np.dtype, GGUFValueType] = {
    np.dtype(dt): vt for vt, dt in VALUE_DTYPE.items() if vt != V.BOOL
}
_NP_VALUE_TYPE[np.dtype(np.bool_)] = V.BOOL
_NP_VALUE_TYPE[np.dtype(np.float16)] = V.FLOAT32


class GGUFStringArray(Sequence):
    """A metadata array of strings kept as offsets into the mapped file, decoded on access.

    Supports ``len``, indexing, slicing (a new lazy array), iteration, ``==`` with any sequence
    and :meth:`tolist`; :meth:`raw` gives the undecoded bytes.
    """

    __slots__ = ("_u8", "_starts", "_ends", "_what")

    def __init__(
        self, u8: np.ndarray, starts: np.ndarray, ends: np.ndarray, what: str = "string array"
    ) -> None:
        self._u8, self._starts, self._ends, self._what = u8, starts, ends, what

    def __len__(self) -> int:
        return len(self._starts)

    def raw(self, i: int) -> bytes:
        return self._u8[self._starts[i] : self._ends[i]].tobytes()

    def _decode(self, i: int) -> str:
        s, e = int(self._starts[i]), int(self._ends[i])
        try:
            return self._u8[s:e].tobytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise GGUFError(
                f"{self._what} item {i} at offset {s - 8}: invalid UTF-8 "
                f"({err.reason} at byte {err.start})"
            ) from None

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> GGUFStringArray: ...
    def __getitem__(self, i: int | slice) -> str | GGUFStringArray:
        if isinstance(i, slice):
            return GGUFStringArray(self._u8, self._starts[i], self._ends[i], self._what)
        n = len(self._starts)
        i = operator.index(i)
        if not -n <= i < n:
            raise IndexError(f"string array index {i} out of range for length {n}")
        return self._decode(i % n)

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self._starts)):
            yield self._decode(i)

    def tolist(self) -> list[str]:
        """All strings, decoded in one pass over one bytes copy of the span they occupy."""
        if len(self._starts) == 0:
            return []
        lo, hi = int(self._starts.min()), int(self._ends.max())
        buf = self._u8[lo:hi].tobytes()
        try:
            starts, ends = (self._starts - lo).tolist(), (self._ends - lo).tolist()
            return [buf[s:e].decode("utf-8") for s, e in zip(starts, ends, strict=True)]
        except UnicodeDecodeError:
            return list(self)  # the per-item path names the bad item and offset

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, bytes)) or not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        head = ", ".join(repr(self[i]) for i in range(min(3, len(self))))
        more = ", ..." if len(self) > 3 else ""
        return f"GGUFStringArray([{head}{more}], len={len(self)})"


def infer_type(value: Any) -> tuple[GGUFValueType, ...]:
    """The value type chain gguf-py would pick: int -> INT32 (wider if needed), float -> FLOAT32,
    bool, str, sequences -> (ARRAY, element type...), numpy arrays -> ARRAY of their dtype."""
    if isinstance(value, (bool, np.bool_)):
        return (V.BOOL,)
    if isinstance(value, np.generic):
        vt = _NP_VALUE_TYPE.get(value.dtype)
        if vt is None:
            raise DTypeError(f"metadata value {value!r}: dtype {value.dtype} has no GGUF type")
        return (vt,)
    if isinstance(value, int):
        return (_int_type([value]),)
    if isinstance(value, float):
        return (V.FLOAT32,)
    if isinstance(value, (str, bytes, bytearray)):
        return (V.STRING,)
    if isinstance(value, GGUFStringArray):
        return (V.ARRAY, V.STRING)
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise GGUFError(f"metadata array must be 1-D, got shape {value.shape}")
        if value.dtype.kind in "US":
            return (V.ARRAY, V.STRING)
        vt = _NP_VALUE_TYPE.get(value.dtype.newbyteorder("<"))
        if vt is None:
            raise DTypeError(f"metadata array dtype {value.dtype} has no GGUF value type")
        return (V.ARRAY, vt)
    if isinstance(value, Sequence):
        if len(value) == 0:
            raise GGUFError(
                "cannot infer the element type of an empty array: pass value_type="
                "(GGUFValueType.ARRAY, element_type)"
            )
        kinds = {_kind(v) for v in value}
        if kinds == {"int"}:
            return (V.ARRAY, _int_type(value))
        if kinds <= {"int", "float"}:
            return (V.ARRAY, V.FLOAT32)
        if len(kinds) == 1 and kinds != {"other"}:
            return (V.ARRAY, *infer_type(value[0]))
        raise GGUFError(
            f"metadata array mixes element kinds {sorted(kinds)}; all elements must have one type"
        )
    raise DTypeError(f"metadata value of type {type(value).__name__} has no GGUF value type")


def _kind(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    if isinstance(v, (str, bytes, bytearray)):
        return "str"
    if isinstance(v, (Sequence, np.ndarray)):
        return "array"
    return "other"


def _int_type(values: Sequence[int]) -> GGUFValueType:
    lo, hi = min(int(v) for v in values), max(int(v) for v in values)
    if -(2**31) <= lo and hi < 2**31:
        return V.INT32
    if -(2**63) <= lo and hi < 2**63:
        return V.INT64
    if 0 <= lo and hi < 2**64:
        return V.UINT64
    raise GGUFError(f"integer {lo if lo < -(2**63) else hi} does not fit any GGUF integer type")


def normalize_type(value: Any, value_type: Any) -> tuple[GGUFValueType, ...]:
    if value_type is None:
        return infer_type(value)
    chain = tuple(
        GGUFValueType(t)
        for t in (value_type if isinstance(value_type, (tuple, list)) else (value_type,))
    )
    if chain[-1] == V.ARRAY:  # element type left open: infer it from the value
        inner = infer_type(value)
        if inner[0] != V.ARRAY:
            raise GGUFError(f"value_type ARRAY given for a non-sequence value {value!r}")
        chain = chain[:-1] + inner
    return chain


def encode_value(value: Any, chain: tuple[GGUFValueType, ...]) -> bytes:
    """The bytes of ``value`` typed by ``chain`` (without its leading type tag)."""
    vt = chain[0]
    if vt == V.STRING:
        b = bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode("utf-8")
        return U64.pack(len(b)) + b
    if vt == V.ARRAY:
        if len(chain) < 2:
            chain = normalize_type(value, V.ARRAY)
        return _encode_array(value, chain[1:])
    if vt == V.BOOL and not isinstance(value, (bool, np.bool_, int, np.integer)):
        raise GGUFError(f"BOOL value expected, got {value!r}")
    if vt in (V.FLOAT32, V.FLOAT64) and not isinstance(value, (int, float, np.number)):
        raise GGUFError(f"{vt.name} value expected, got {value!r}")
    try:
        return SCALAR[vt].pack(int(bool(value)) if vt == V.BOOL else value)
    except (struct.error, OverflowError, TypeError, ValueError) as e:
        raise GGUFError(f"value {value!r} does not fit GGUF type {vt.name}: {e}") from None


def _encode_array(value: Any, elem: tuple[GGUFValueType, ...]) -> bytes:
    et = elem[0]
    n = len(value)
    head = U32.pack(et) + U64.pack(n)
    if et == V.STRING:
        if isinstance(value, GGUFStringArray):
            items = [value.raw(i) for i in range(n)]
        else:
            items = [
                bytes(v) if isinstance(v, (bytes, bytearray)) else str(v).encode("utf-8")
                for v in value
            ]
        return head + b"".join(U64.pack(len(b)) + b for b in items)
    if et == V.ARRAY:
        return head + b"".join(encode_value(v, elem) for v in value)
    dt = np.dtype(VALUE_DTYPE[et])
    try:
        arr = np.asarray(value)
    except (OverflowError, ValueError) as e:
        raise GGUFError(f"array elements do not fit {et.name}: {e}") from None
    if arr.ndim != 1 and n:
        raise GGUFError(f"array of {et.name} must be flat, got shape {arr.shape}")
    if et == V.BOOL:
        ok = arr.dtype.kind in "bui"
    elif dt.kind in "iu":
        ok = arr.dtype.kind in "bui" and (
            arr.size == 0 or (np.iinfo(dt).min <= arr.min() and arr.max() <= np.iinfo(dt).max)
        )
    else:
        ok = arr.dtype.kind in "biuf"
    if not ok and n:
        raise GGUFError(f"array elements (dtype {arr.dtype}) do not fit GGUF type {et.name}")
    data = (arr != 0) if et == V.BOOL and n else arr
    return head + np.ascontiguousarray(data, dtype=dt).tobytes()
