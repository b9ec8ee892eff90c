"""trueno.gguf.writer: files we write are read back identically by gguf-py's GGUFReader and by
our reader; the state machine names the state it expected; type inference follows gguf-py."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf_build import sample_file
from hypothesis import given
from hypothesis import strategies as st

from trueno.errors import DTypeError, GGUFError
from trueno.floats import f32_to_bf16 as to_bf16
from trueno.gguf import GGMLType, GGUFValueType, load
from trueno.gguf import GGUFValueType as V
from trueno.gguf.writer import GGUFWriter, WriterState, infer_type, write_gguf
from trueno.quant import dequantize_tensor

RNG = np.random.default_rng(99)
SCALARS = [
    ("add_uint8", "s.u8", 255, V.UINT8),
    ("add_int8", "s.i8", -128, V.INT8),
    ("add_uint16", "s.u16", 65535, V.UINT16),
    ("add_int16", "s.i16", -32768, V.INT16),
    ("add_uint32", "s.u32", 2**32 - 1, V.UINT32),
    ("add_int32", "s.i32", -(2**31), V.INT32),
    ("add_uint64", "s.u64", 2**64 - 1, V.UINT64),
    ("add_int64", "s.i64", -(2**63), V.INT64),
    ("add_float32", "s.f32", -2.5, V.FLOAT32),
    ("add_float64", "s.f64", 1.0000000001, V.FLOAT64),
    ("add_bool", "s.bool", False, V.BOOL),
    ("add_string", "s.str", "ünïcødé 日本語 🙂", V.STRING),
]
ARRAYS = {  # key -> (values, element type)
    "a.u8": (np.array([0, 255], np.uint8), V.UINT8),
    "a.i8": (np.array([-128, 127], np.int8), V.INT8),
    "a.u16": (np.array([0, 65535], np.uint16), V.UINT16),
    "a.i16": (np.array([-5, 5], np.int16), V.INT16),
    "a.u32": (np.array([1, 2**32 - 1], np.uint32), V.UINT32),
    "a.i32": (np.array([-1, 2], np.int32), V.INT32),
    "a.u64": (np.array([2**64 - 1], np.uint64), V.UINT64),
    "a.i64": (np.array([-(2**63), 7], np.int64), V.INT64),
    "a.f32": (np.array([0.25, -1e30], np.float32), V.FLOAT32),
    "a.f64": (np.array([1e-300, 3.5]), V.FLOAT64),
    "a.bool": ([True, False, True], V.BOOL),
    "a.str": (["<s>", "", "ß", "日本", "🙂 x"], V.STRING),
}


def _gguf_py_contents(reader: gguf.GGUFReader) -> dict:
    return {
        k: (f.types, f.contents()) for k, f in reader.fields.items() if not k.startswith("GGUF.")
    }


def _write_everything(path) -> dict:
    tensors = {
        "f32": RNG.standard_normal((4, 8)).astype(np.float32),
        "f16": RNG.standard_normal((3, 16)).astype(np.float16),
        "bf16_src": RNG.standard_normal((2, 32)).astype(np.float32),
        "q4k": RNG.integers(0, 256, (2, 144), dtype=np.uint8),
        "q8": RNG.integers(0, 256, (3, 2 * 34), dtype=np.uint8),
    }
    with GGUFWriter(path, arch="llama") as w:
        for method, key, value, _ in SCALARS:
            getattr(w, method)(key, value)
        for key, (values, et) in ARRAYS.items():
            w.add_array(key, values, et)
        w.add_array("a.nested", [[1, 2, 3], [4]], (V.ARRAY, V.INT32))
        w.add_tensor("f32", tensors["f32"])
        w.add_tensor("f16", tensors["f16"])
        w.add_tensor("bf16", tensors["bf16_src"], GGMLType.BF16)
        w.add_tensor("q4k", tensors["q4k"], GGMLType.Q4_K, raw_shape=(2, 256))
        w.add_tensor("q8", tensors["q8"], GGMLType.Q8_0)  # shape from the byte shape: (3, 64)
    return tensors


def test_gguf_py_reads_what_we_write(tmp_path):
    p = tmp_path / "ours.gguf"
    tensors = _write_everything(p)
    ref = gguf.GGUFReader(str(p))
    got = _gguf_py_contents(ref)
    assert got["general.architecture"] == ([V.STRING], "llama")
    for _, key, value, vt in SCALARS:
        types, contents = got[key]
        assert types == [vt], key
        assert contents == (pytest.approx(value) if vt == V.FLOAT32 else value), key
    for key, (values, et) in ARRAYS.items():
        types, contents = got[key]
        assert types == [V.ARRAY, et], key
        assert contents == list(np.asarray(values).tolist()), key
    assert got["a.nested"][0][:2] == [V.ARRAY, V.ARRAY]
    by_name = {t.name: t for t in ref.tensors}
    np.testing.assert_array_equal(by_name["f32"].data, tensors["f32"])
    np.testing.assert_array_equal(by_name["f16"].data, tensors["f16"])
    bf_ref = gguf.quants.quantize(tensors["bf16_src"], gguf.GGMLQuantizationType.BF16)
    np.testing.assert_array_equal(by_name["bf16"].data, bf_ref)  # same rounding as gguf-py
    assert by_name["bf16"].tensor_type == gguf.GGMLQuantizationType.BF16
    np.testing.assert_array_equal(by_name["q4k"].data, tensors["q4k"])
    assert list(by_name["q4k"].shape) == [256, 2]
    assert list(by_name["q8"].shape) == [64, 3]
    assert all(t.data_offset % 32 == 0 for t in ref.tensors)


def test_our_reader_reads_what_we_write(tmp_path):
    p = tmp_path / "ours.gguf"
    tensors = _write_everything(p)
    with load(p) as f:
        for _, key, value, vt in SCALARS:
            assert f.metadata_types[key] == vt
            assert f.metadata[key] == (pytest.approx(value) if vt == V.FLOAT32 else value)
        for key, (values, et) in ARRAYS.items():
            assert f.metadata_types[key] == (V.ARRAY, et)
            got = f.metadata[key]
            assert (got.tolist() if et == V.STRING else list(got)) == list(
                np.asarray(values).tolist()
            )
        assert [a.tolist() for a in f.metadata["a.nested"]] == [[1, 2, 3], [4]]
        assert f.metadata_types["a.nested"] == (V.ARRAY, V.ARRAY, V.INT32)
        np.testing.assert_array_equal(f.tensors["f32"].data, tensors["f32"])
        np.testing.assert_allclose(
            dequantize_tensor(f.tensors["bf16"]), tensors["bf16_src"], rtol=2**-8
        )
        assert f.tensors["q4k"].ggml_type == GGMLType.Q4_K and f.tensors["q4k"].shape == (2, 256)
        np.testing.assert_array_equal(f.tensors["q8"].data, tensors["q8"])


def test_copy_through_write_gguf_is_byte_identical(tmp_path):
    src, dst = tmp_path / "a.gguf", tmp_path / "b.gguf"
    _write_everything(src)
    with load(src) as f:
        tensors = {n: (t.data, t.ggml_type, t.shape) for n, t in f.tensors.items()}
        write_gguf(dst, f.metadata, tensors, metadata_types=f.metadata_types)
    assert dst.read_bytes() == src.read_bytes()


def test_alignment_is_honoured(tmp_path):
    p = tmp_path / "a.gguf"
    write_gguf(
        p, {"general.alignment": 64}, {"x": np.ones(3, np.float32), "y": np.ones(5, np.float32)}
    )
    ref = gguf.GGUFReader(str(p))
    assert ref.alignment == 64 and ref.data_offset % 64 == 0
    assert [t.data_offset % 64 for t in ref.tensors] == [0, 0]
    with load(p) as f:
        assert f.alignment == 64 and f.metadata_types["general.alignment"] == V.UINT32
    with GGUFWriter(tmp_path / "b.gguf", alignment=128) as w:
        w.add_tensor("x", np.ones(3, np.float32))
    with load(tmp_path / "b.gguf") as f:
        assert f.alignment == 128 and f.tensors["x"].offset % 128 == 0


def test_big_tensors_are_streamed_not_copied(tmp_path):
    big = np.ones((1024, 1024), np.float32)  # 4 MiB
    import tracemalloc

    tracemalloc.start()
    write_gguf(tmp_path / "big.gguf", {}, {"a": big, "b": big})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < big.nbytes // 2


def test_streaming_tensor_data(tmp_path):
    p = tmp_path / "s.gguf"
    w = GGUFWriter(p, arch="llama")
    w.add_tensor_info("a", (2, 4), GGMLType.F32)
    w.add_tensor_info("b", (32,), GGMLType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.write_tensor_data(np.arange(8, dtype=np.float32).reshape(2, 4))
    w.write_tensor_data(np.linspace(0, 1, 32))
    w.close()
    with load(p) as f:
        np.testing.assert_array_equal(f.tensors["a"].data.ravel(), np.arange(8))
        np.testing.assert_array_equal(f.tensors["b"].data, to_bf16(np.linspace(0, 1, 32)))


def test_state_machine_names_expected_state(tmp_path):
    w = GGUFWriter(tmp_path / "x.gguf")
    with pytest.raises(GGUFError, match="expected state HEADER.*state EMPTY"):
        w.write_kv_data_to_file()
    w.write_header_to_file()
    assert w.state == WriterState.HEADER
    with pytest.raises(GGUFError, match="add_key_value: expected state EMPTY.*state HEADER"):
        w.add_uint32("k", 1)
    with pytest.raises(GGUFError, match="add_tensor: expected state EMPTY"):
        w.add_tensor("t", np.ones(2, np.float32))
    with pytest.raises(GGUFError, match="expected state TI_DATA .* or WEIGHTS"):
        w.write_tensors_to_file()
    w.write()
    assert w.state == WriterState.CLOSED
    with pytest.raises(GGUFError, match="state CLOSED"):
        w.write_header_to_file()


def test_close_with_unwritten_tensors_raises(tmp_path):
    w = GGUFWriter(tmp_path / "x.gguf")
    w.add_tensor_info("a", (4,), GGMLType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    with pytest.raises(GGUFError, match="incomplete.*1 tensors never written"):
        w.close()


def test_context_manager_does_not_write_on_error(tmp_path):
    p = tmp_path / "x.gguf"
    with pytest.raises(RuntimeError), GGUFWriter(p) as w:
        w.add_uint32("k", 1)
        raise RuntimeError("boom")
    assert not p.exists()


def test_failed_write_removes_partial_file(tmp_path):
    p = tmp_path / "x.gguf"
    w = GGUFWriter(p)
    w.add_tensor_info("a", (4,), GGMLType.F32)
    with pytest.raises(GGUFError, match="declared with add_tensor_info"):
        w.write()  # no data for "a"
    assert not p.exists() and w.state == WriterState.CLOSED
    with pytest.raises(RuntimeError), GGUFWriter(p) as w:
        w.add_tensor("t", np.ones(4, np.float32))
        w.write_header_to_file()
        raise RuntimeError("boom")
    assert not p.exists()


def test_type_inference_follows_gguf_py():
    assert infer_type(1) == (V.INT32,)
    assert infer_type(2**31) == (V.INT64,)
    assert infer_type(2**63) == (V.UINT64,)
    assert infer_type(1.5) == (V.FLOAT32,)
    assert infer_type(True) == (V.BOOL,)
    assert infer_type("s") == (V.STRING,)
    assert infer_type(["a", "b"]) == (V.ARRAY, V.STRING)
    assert infer_type([1, 2.5]) == (V.ARRAY, V.FLOAT32)
    assert infer_type([[1], [2]]) == (V.ARRAY, V.ARRAY, V.INT32)
    assert infer_type(np.zeros(3, np.uint16)) == (V.ARRAY, V.UINT16)
    assert infer_type(np.float64(1)) == (V.FLOAT64,)
    for v in ([1, 2], "x", 1.0, True):
        assert infer_type(v)[-1] == GGUFValueType(
            int(gguf.GGUFValueType.get_type(v[0] if isinstance(v, list) else v))
        )
    with pytest.raises(GGUFError, match="empty array"):
        infer_type([])
    with pytest.raises(GGUFError, match="mixes"):
        infer_type([1, "a"])
    with pytest.raises(DTypeError):
        infer_type(object())


def test_write_gguf_typed_overrides_and_empty_arrays(tmp_path):
    p = tmp_path / "t.gguf"
    write_gguf(
        p,
        {"k.u16": 5, "k.empty": [], "k.f64s": [1, 2]},
        {},
        metadata_types={
            "k.u16": V.UINT16,
            "k.empty": (V.ARRAY, V.STRING),
            "k.f64s": (V.ARRAY, V.FLOAT64),
        },
    )
    with load(p) as f:
        assert f.metadata_types == {
            "k.u16": V.UINT16,
            "k.empty": (V.ARRAY, V.STRING),
            "k.f64s": (V.ARRAY, V.FLOAT64),
        }
        assert f.metadata["k.u16"] == 5 and len(f.metadata["k.empty"]) == 0
        assert f.metadata["k.f64s"].dtype == np.float64


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda w: w.add_uint8("k", 256), "does not fit GGUF type UINT8"),
        (lambda w: w.add_int32("k", 1.5), "INT32"),
        (lambda w: w.add_float32("k", "x"), "FLOAT32"),
        (lambda w: w.add_array("k", [300], V.UINT8), "UINT8"),
        (lambda w: w.add_uint32("general.alignment", 24), "power of two"),
        (lambda w: w.add_tensor("t" * 64, np.ones(2, np.float32)), "at most 63"),
        (lambda w: w.add_tensor("t", np.ones((1, 1, 1, 1, 2), np.float32)), "0..4 dims"),
        (
            lambda w: w.add_tensor("t", np.ones((2, 34), np.uint8), GGMLType.Q8_0, (2, 33)),
            "block size 32",
        ),
        (
            lambda w: w.add_tensor("t", np.ones((2, 32), np.float32), GGMLType.Q8_0),
            r"float32 data for Q8_0: quantize it first \(trueno.quant.quantize\)",
        ),
        (lambda w: w.add_tensor("t", np.ones((2, 35), np.uint8), GGMLType.Q8_0), "34-byte blocks"),
        (
            lambda w: w.add_tensor("t", np.ones((2, 34), np.uint8), GGMLType.Q8_0, (2, 64)),
            "needs 136",
        ),
        (lambda w: w.add_tensor("t", np.ones(2, np.float32), 77), "unknown GGML type 77"),
    ],
)
def test_bad_input_is_refused(tmp_path, call, match):
    w = GGUFWriter(tmp_path / "x.gguf")
    with pytest.raises(GGUFError, match=match):
        call(w)


def test_duplicates_and_dtypes_refused(tmp_path):
    w = GGUFWriter(tmp_path / "x.gguf")
    w.add_uint32("k", 1)
    with pytest.raises(GGUFError, match="duplicate metadata key 'k'"):
        w.add_int32("k", 2)
    w.add_tensor("t", np.ones(2, np.float32))
    with pytest.raises(GGUFError, match="duplicate tensor name 't'"):
        w.add_tensor("t", np.ones(2, np.float32))
    with pytest.raises(DTypeError, match="uint8"):
        w.add_tensor("u", np.ones(2, np.uint8))


def test_blocks_from_trueno_quant_are_written_as_gguf_py_quantizes(tmp_path):
    from trueno.quant import quantize

    x = RNG.standard_normal((2, 64)).astype(np.float32)
    write_gguf(tmp_path / "q.gguf", {}, {"q": (quantize(x, GGMLType.Q8_0), GGMLType.Q8_0)})
    with load(tmp_path / "q.gguf") as f:
        ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
        np.testing.assert_array_equal(f.tensors["q"].data, ref)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q5_1"])
def test_3d_quantized_tensors_as_moe_experts(tmp_path, qtype):
    """(experts, rows, cols) blocks, shape given or inferred from the bytes: gguf-py reads its
    own blocks and dims (ne reversed) back, our reader a (E, rows, row_bytes) view."""
    t = GGMLType[qtype]
    x = RNG.standard_normal((3, 4, 256)).astype(np.float32)
    ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType[qtype])  # (3, 4, row_bytes)
    write_gguf(tmp_path / "e.gguf", {}, {"inferred": (ref, t), "blocks": (ref, t, x.shape)})
    by_name = {r.name: r for r in gguf.GGUFReader(str(tmp_path / "e.gguf")).tensors}
    for name in ("inferred", "blocks"):
        assert list(by_name[name].shape) == [256, 4, 3]
        np.testing.assert_array_equal(np.asarray(by_name[name].data).reshape(ref.shape), ref)
    with load(tmp_path / "e.gguf") as f:
        info = f.tensors["inferred"]
        assert info.shape == (3, 4, 256) and info.data.shape == ref.shape
        np.testing.assert_array_equal(info.data, ref)
        np.testing.assert_array_equal(info.data[1], ref[1])  # one expert: a view of its rows
        assert np.shares_memory(info.data[1], info.data) and info.data[1].flags.c_contiguous


@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=64))
def test_bf16_rounding_matches_gguf_py(values):
    x = np.array(values, np.float32)
    ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType.BF16).view(np.uint16)
    np.testing.assert_array_equal(to_bf16(x), ref)


def test_bf16_nan_stays_nan():
    bits = to_bf16(np.array([np.nan, np.inf, -np.inf], np.float32))
    back = (bits.astype(np.uint32) << 16).view(np.float32)
    assert np.isnan(back[0]) and back[1] == np.inf and back[2] == -np.inf


def test_sample_file_helper_round_trips(tmp_path):
    sample_file(tmp_path / "s.gguf")
    ref = gguf.GGUFReader(str(tmp_path / "s.gguf"))
    assert ref.fields["t.nested"].types[:2] == [V.ARRAY, V.ARRAY]
    assert len(ref.tensors) == 3
