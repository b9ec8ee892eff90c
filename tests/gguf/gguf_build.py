"""Byte-level GGUF builders for tests: hostile files are made field by field, valid ones through
our writer. Every helper returns bytes; tests write them to tmp_path."""

from __future__ import annotations

import struct

import numpy as np

from trueno.gguf import GGMLType
from trueno.gguf import GGUFValueType as V
from trueno.gguf.constants import VALUE_DTYPE
from trueno.gguf.writer import write_gguf


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v % 2**64)


def gstr(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return u64(len(b)) + b


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + u32(vtype) + payload


def kv_u32(key: str, v: int) -> bytes:
    return kv(key, V.UINT32, u32(v))


def tinfo(name: str | bytes, ne: list[int], gtype: int, offset: int) -> bytes:
    """A tensor info; ``ne`` in GGUF order (innermost first)."""
    return gstr(name) + u32(len(ne)) + b"".join(u64(d) for d in ne) + u32(gtype) + u64(offset)


def gguf_bytes(
    kvs: list[bytes] = (),
    tinfos: list[bytes] = (),
    data: bytes = b"",
    *,
    version: int = 3,
    magic: bytes = b"GGUF",
    n_kv: int | None = None,
    n_tensors: int | None = None,
    alignment: int = 32,
) -> bytes:
    """Header + metadata + tensor infos, padded to ``alignment``, then ``data``."""
    head = magic + u32(version) + u64(len(tinfos) if n_tensors is None else n_tensors)
    head += u64(len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tinfos)
    body += b"\0" * (-len(body) % alignment)
    return body + data


def one_f32_tensor(
    ne: list[int] | None = None,
    gtype: int = GGMLType.F32,
    offset: int = 0,
    data: bytes | None = None,
    kvs: list[bytes] = (),
) -> bytes:
    """A file holding one tensor ``t`` (default: 8 float32 values)."""
    ne = ne or [8]
    data = np.arange(8, dtype=np.float32).tobytes() if data is None else data
    return gguf_bytes(list(kvs), [tinfo("t", ne, gtype, offset)], data)


def sample_file(path, n_tokens: int = 16) -> None:
    """A small valid file exercising every section: scalars of each kind, a string array, a
    numeric array, a nested array, and F32 / F16 / Q8_0-block tensors."""
    rng = np.random.default_rng(0)
    q8 = np.zeros((2, 34), np.uint8)
    q8[:, 2:] = rng.integers(0, 256, (2, 32))
    q8[:, :2] = np.frombuffer(np.float16(0.5).tobytes(), np.uint8)
    write_gguf(
        path,
        {
            "general.name": "fuzz base",
            "t.u32": 7,
            "t.f32": 0.5,
            "t.flag": True,
            "tokenizer.ggml.tokens": [f"tok{i}" for i in range(n_tokens)],
            "tokenizer.ggml.scores": np.linspace(0, 1, n_tokens, dtype=np.float32),
            "t.nested": [[1, 2], [3, 4, 5]],
        },
        {
            "w": np.arange(32, dtype=np.float32).reshape(2, 16),
            "h": np.ones((2, 8), np.float16),
            "q": (q8, GGMLType.Q8_0, (2, 32)),
        },
        arch="llama",
        metadata_types={"t.u32": V.UINT32},
    )


def header_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of every integer field in a valid file's header: counts, lengths, value
    types, scalars, array element types and counts, n_dims, dims, GGML types, data offsets."""
    fields: list[tuple[int, int]] = [(4, 4), (8, 8), (16, 8)]
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos = 24

    def string(p: int) -> int:
        fields.append((p, 8))
        return p + 8 + struct.unpack_from("<Q", data, p)[0]

    def value(p: int, vt: int) -> int:
        if vt == V.STRING:
            return string(p)
        if vt == V.ARRAY:
            fields.extend([(p, 4), (p + 4, 8)])
            et, n = struct.unpack_from("<IQ", data, p)
            p += 12
            for _ in range(n):
                p = value(p, et)
            return p
        width = np.dtype(VALUE_DTYPE[V(vt)]).itemsize
        fields.append((p, width))
        return p + width

    for _ in range(n_kv):
        pos = string(pos)
        fields.append((pos, 4))
        vt = struct.unpack_from("<I", data, pos)[0]
        pos = value(pos + 4, vt)
    for _ in range(n_tensors):
        pos = string(pos)
        n_dims = struct.unpack_from("<I", data, pos)[0]
        fields.append((pos, 4))
        fields.extend((pos + 4 + 8 * j, 8) for j in range(n_dims))
        pos += 4 + 8 * n_dims
        fields.extend([(pos, 4), (pos + 4, 8)])
        pos += 12
    return fields
