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
