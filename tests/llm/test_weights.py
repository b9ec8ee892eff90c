from __future__ import annotations

import numpy as np
import pytest

from trueno.errors import ModelError
from trueno.gguf.constants import GGMLType
from trueno.llm.weights import Embedding, _TensorInfo
from trueno.quant import quantize


@pytest.mark.parametrize("t", ["F32", "F16", "Q8_0", "Q4_1", "Q6_K"])
def test_embedding_row_equals_batch_lookup(t):
    rng = np.random.default_rng(3)
    vocab, dim = 11, 256
    w = rng.standard_normal((vocab, dim)).astype(np.float32)
    if t == "F32":
        data = w
    elif t == "F16":
        data = w.astype(np.float16).view(np.uint8).reshape(vocab, -1)
    else:
        data = quantize(w, GGMLType[t])
    emb = Embedding(_TensorInfo("token_embd.weight", (vocab, dim), GGMLType[t], data))
    out = np.empty(dim, np.float32)
    for tok in (0, 5, vocab - 1):
        emb.row(tok, out)
        assert np.array_equal(out, emb(np.array([tok]))[0])
    with pytest.raises(ModelError, match="out of range"):
        emb.row(vocab, out)


def test_a_layer_without_its_matrices_is_a_model_error():
    from trueno.llm.weights import LayerWeights, Matrix

    rng = np.random.default_rng(4)

    def mat(name, rows):
        w = rng.standard_normal((rows, 32)).astype(np.float32)
        return Matrix(name, _TensorInfo(name, (rows, 32), GGMLType.F32, w))

    none = dict(attn_norm=None, wo=mat("wo", 32), ffn_norm=None, w_down=mat("w_down", 32))
    layer = LayerWeights(wq=None, wk=None, wv=None, w_gate=None, w_up=None, **none)
    with pytest.raises(ModelError, match="attention needs attn_qkv"):
        layer.fuse(prepare=False)
    fused = dict(wq=None, wk=None, wv=None, wqkv=mat("wqkv", 96), **none)
    with pytest.raises(ModelError, match="attention needs attn_qkv"):  # biases need Q, K, V
        LayerWeights(w_gate=None, w_up=None, bq=np.zeros(32, np.float32), **fused).fuse(False)
    with pytest.raises(ModelError, match="the FFN needs ffn_gate_up"):
        LayerWeights(w_gate=None, w_up=mat("w_up", 64), **fused).fuse(prepare=False)
    layer = LayerWeights(w_gate=mat("w_gate", 64), w_up=mat("w_up", 64), **fused)
    layer.fuse(prepare=False)  # Q|K|V as the file has it, gate|up stacked here
    assert layer.wqkv is fused["wqkv"] and layer.w_gate_up.shape == (128, 32)
    separate = dict(wq=mat("wq", 32), wk=mat("wk", 16), wv=mat("wv", 16), **none)
    layer = LayerWeights(
        w_gate=mat("g", 64), w_up=mat("u", 64), bk=np.ones(16, np.float32), **separate
    )
    layer.fuse(prepare=False)
    assert layer.wqkv.shape == (64, 32)
    assert np.array_equal(layer.bqkv, np.r_[np.zeros(32), np.ones(16), np.zeros(16)])


@pytest.mark.parametrize("t", ["Q8_0", "Q4_1", "Q6_K"])
def test_a_short_matmul_equals_its_rows_matvecs(t):
    """A prompt chunk of up to MATVEC_ROWS rows reads the blocks once for all rows (the
    multi-vector kernel); each row equals the one-row matvec bit for bit."""
    from trueno.llm.weights import Matrix
    from trueno.quant.prepared import MATVEC_ROWS

    rng = np.random.default_rng(5)
    rows, cols = 48, 256
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    m = Matrix("w", _TensorInfo("w", (rows, cols), GGMLType[t], quantize(w, GGMLType[t])))
    for n in (1, 2, 5, MATVEC_ROWS):
        x = rng.standard_normal((n, cols)).astype(np.float32)
        want = np.empty((n, rows), np.float32)
        for i in range(n):
            m.matvec_into(x[i], want[i])
        assert np.array_equal(m.matmul(x), want)
