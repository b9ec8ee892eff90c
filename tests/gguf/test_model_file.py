"""A real file end to end: a small llama-shaped model of mixed tensor types written with our
writer (quantizing through trueno.quant), read back by gguf-py (an implementation we did not
write) and by our reader, and every tensor compared: type, shape, bytes and dequantized values."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

import trueno.gguf as tg
from trueno.gguf.constants import GGMLType, Keys
from trueno.quant import dequantize_tensor, quantize

D, FF, VOCAB, LAYERS = 256, 512, 64, 2

# one tensor type per role, covering every type we quantize
LAYER_TYPES = {
    "attn_norm.weight": GGMLType.F32,
    "attn_q.weight": GGMLType.Q4_0,
    "attn_k.weight": GGMLType.Q4_1,
    "attn_v.weight": GGMLType.Q5_0,
    "attn_output.weight": GGMLType.Q5_1,
    "ffn_norm.weight": GGMLType.F32,
    "ffn_gate.weight": GGMLType.Q4_K,
    "ffn_up.weight": GGMLType.Q5_K,
    "ffn_down.weight": GGMLType.Q6_K,
}
SHAPES = {
    "attn_norm.weight": (D,),
    "attn_q.weight": (D, D),
    "attn_k.weight": (D, D),
    "attn_v.weight": (D, D),
    "attn_output.weight": (D, D),
    "ffn_norm.weight": (D,),
    "ffn_gate.weight": (FF, D),
    "ffn_up.weight": (FF, D),
    "ffn_down.weight": (D, FF),
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    rng = np.random.default_rng(7)
    tensors = {
        "token_embd.weight": (rng.standard_normal((VOCAB, D)).astype(np.float32), GGMLType.Q8_0),
        "output_norm.weight": rng.standard_normal(D).astype(np.float32),
        "output.weight": (rng.standard_normal((VOCAB, D)).astype(np.float32), GGMLType.BF16),
    }
    for i in range(LAYERS):
        for role, gt in LAYER_TYPES.items():
            x = rng.standard_normal(SHAPES[role]).astype(np.float32)
            tensors[f"blk.{i}.{role}"] = x if gt == GGMLType.F32 else (x, gt)
    tensors["blk.1.attn_q.weight"] = (tensors["blk.1.attn_q.weight"][0], GGMLType.F16)
    arch = "llama"
    metadata = {
        Keys.ARCHITECTURE: arch,
        Keys.NAME: "tiny mixed-type llama",
        Keys.arch(Keys.EMBEDDING_LENGTH, arch): D,
        Keys.arch(Keys.FEED_FORWARD_LENGTH, arch): FF,
        Keys.arch(Keys.BLOCK_COUNT, arch): LAYERS,
        Keys.arch(Keys.HEAD_COUNT, arch): 4,
        Keys.arch(Keys.LAYERNORM_RMS_EPS, arch): 1e-5,
        Keys.TOKENIZER_MODEL: "llama",
        Keys.TOKENS: [f"<t{i}>" for i in range(VOCAB)],
        Keys.SCORES: np.linspace(0, -1, VOCAB, dtype=np.float32),
    }
    path = tmp_path_factory.mktemp("model") / "tiny-mixed.gguf"
    encoded = {  # the format layer takes blocks: quantizing is trueno.quant's
        name: (quantize(t[0], t[1]), t[1])
        if isinstance(t, tuple) and t[1] not in (GGMLType.F16, GGMLType.BF16)
        else t
        for name, t in tensors.items()
    }
    tg.write_gguf(path, metadata, encoded)
    return path, tensors, metadata


def test_gguf_py_reads_every_tensor_we_wrote(model_file):
    path, tensors, metadata = model_file
    ref = gguf.GGUFReader(path)
    theirs = {t.name: t for t in ref.tensors}
    assert set(theirs) == set(tensors)
    with tg.load(path) as ours:
        for name, t in theirs.items():
            mine = ours.tensors[name]
            assert int(t.tensor_type) == int(mine.ggml_type), name
            assert tuple(int(n) for n in reversed(t.shape)) == mine.shape, name
            assert np.asarray(t.data).tobytes() == mine.data.tobytes(), name
            expected = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
            np.testing.assert_array_equal(
                dequantize_tensor(ours.tensors[name]), expected.reshape(mine.shape)
            )


def test_quantized_values_stay_close_to_the_originals(model_file):
    path, tensors, _ = model_file
    with tg.load(path) as ours:
        for name, t in tensors.items():
            x = t[0] if isinstance(t, tuple) else t
            err = np.abs(dequantize_tensor(ours.tensors[name]) - x).max() / np.abs(x).max()
            assert err < 0.2, (name, ours.tensors[name].ggml_type, err)  # Q4 step ~ 1/8


def test_gguf_py_reads_the_metadata(model_file):
    path, _, metadata = model_file
    ref = gguf.GGUFReader(path)
    fields = ref.fields
    assert fields[Keys.ARCHITECTURE].contents() == "llama"
    assert fields[Keys.arch(Keys.BLOCK_COUNT, "llama")].contents() == LAYERS
    assert fields[Keys.TOKENS].contents() == metadata[Keys.TOKENS]
    np.testing.assert_array_equal(fields[Keys.SCORES].contents(), metadata[Keys.SCORES])
