"""The two registry models against llama.cpp's reference outputs (``make test-models``).

llama.cpp quantizes activations and keeps some values in f16, so logits differ by ~0.1:
compare top-k ids and greedy tokens, never raw logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from llm_models import gemma3_path, smollm2_path

from trueno.llm import Model

REFERENCE = Path(__file__).resolve().parents[3] / "shared/testdata/llamacpp/reference_outputs.json"
MODELS = {
    "smollm2": ("SmolLM2-135M-Instruct.Q4_1", smollm2_path, " Paris", 7042),
    "gemma3": ("gemma-3-270m-q4_k_m", gemma3_path, " the", 506),
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    name, find, piece, first = MODELS[request.param]
    path = find()
    if path is None:
        pytest.skip(f"model package for {request.param} is not installed")
    if not REFERENCE.exists():
        pytest.skip(f"reference outputs not found at {REFERENCE}")
    ref = json.loads(REFERENCE.read_text())["models"][name]["f32_kv"]
    return Model.load(path, ctx_size=512), ref, piece, first


def test_prompt_tokens_match_llama_cpp(case):
    model, ref, _, _ = case
    assert (
        model.tokenizer.encode(ref["prompt"], add_special=True, parse_special=True)
        == ref["prompt_tokens"]
    )


def test_first_token_and_top5_match_llama_cpp(case):
    model, ref, piece, first = case
    logits = model.logits(ref["prompt_tokens"])[-1]
    top5 = np.argsort(-logits)[:5].tolist()
    assert top5[0] == first
    assert model.tokenizer.token_to_piece(top5[0]).decode() == piece
    assert set(top5) == {t["id"] for t in ref["top5_first"]}
    # within llama.cpp's own f16/f32 spread of logits
    np.testing.assert_allclose(logits[top5[0]], ref["top5_first"][0]["logit"], atol=0.5)


def test_greedy_continuation_matches_llama_cpp(case):
    model, ref, _, _ = case
    gen = model.generate_tokens(ref["prompt_tokens"], max_tokens=5, temperature=0)
    assert list(gen) == ref["generated_tokens"][:5]


def test_batched_prefill_and_decode_agree(case):
    """15 tokens go through the dequantize + BLAS prefill path (more than MATVEC_ROWS);
    the last one also through a decode step's fused matvecs."""
    from trueno.llm.weights import MATVEC_ROWS

    model, ref, _, first = case
    n_prompt = len(ref["prompt_tokens"])
    ids = ref["prompt_tokens"] + ref["generated_tokens"][:10]
    assert len(ids) > MATVEC_ROWS
    full = model.logits(ids)
    # teacher forcing: the first five greedy tokens are llama.cpp's
    assert np.argmax(full[n_prompt - 1 : n_prompt + 4], axis=1).tolist() == ids[n_prompt:][:5]
    model.reset()
    model.prefill(ids[:-1])
    step = model.decode(ids[-1])
    # decode's fused kernels quantize activations to int8 (as llama.cpp does); prefill
    # dequantizes the weights to f32: expect llama.cpp-sized differences, same ranking
    assert np.argmax(step) == np.argmax(full[-1])
    assert np.abs(step - full[-1]).mean() < 0.35
