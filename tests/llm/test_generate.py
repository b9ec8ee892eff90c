"""Generation on tiny models: token loop, stop strings, EOS, context limit, cache reuse,
tracing."""

from __future__ import annotations

import numpy as np
import pytest

from trueno import trace
from trueno.errors import ContextLengthError
from trueno.llm import Model
from trueno.llm.generate import _partial_stop, generate, generate_tokens


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return Model.load(tiny_model_path("qwen2")[0])


def test_greedy_tokens_equal_argmax_of_full_sequence_logits(model):
    prompt = [1, 5, 9, 33]
    got = list(generate_tokens(model, prompt, max_tokens=6, temperature=0))
    seq = list(prompt)
    for _ in range(6):
        seq.append(int(np.argmax(model.logits(seq)[-1])))
    assert got == seq[len(prompt) :]


def test_stats_and_max_tokens(model):
    gen = generate_tokens(model, [1, 4, 7], max_tokens=5, temperature=0)
    tokens = list(gen)
    s = gen.stats
    assert len(tokens) == 5 and s.tokens == tokens
    assert (s.n_prompt, s.n_generated, s.stop_reason) == (3, 5, "length")
    assert s.prompt_s > 0 and s.decode_s > 0 and s.prompt_tok_s > 0


def test_text_prompt_is_tokenized_with_bos(model):
    gen = generate(model, "the cat", max_tokens=4, temperature=0)
    text = gen.text()
    assert isinstance(text, str)
    ids = model.tokenizer.encode("the cat", add_special=True)
    assert ids[0] == model.tokenizer.bos_id
    assert gen.stats.n_prompt == len(ids)
    assert text == model.tokenizer.decode(gen.stats.tokens)


def test_stop_string_cuts_text_and_stops(model):
    full = generate(model, "the cat", max_tokens=24, temperature=0).text()
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop
    gen = generate(model, "the cat", max_tokens=24, temperature=0, stop=[stop])
    text = gen.text()
    assert text == full[: full.find(stop)]
    assert gen.stats.stop_reason == "stop"


def test_partial_stop_holds_back_possible_prefix():
    assert _partial_stop("hello wor", ("world",)) == 3
    assert _partial_stop("hello", ("xyz",)) == 0
    assert _partial_stop("ab", ("abc", "b!")) == 2


def test_eos_ends_generation(model):
    eos = model.tokenizer.eos_id

    def force_eos_after_two(logits, history):
        if len(history) >= 5:
            logits[:] = -np.inf
            logits[eos] = 0.0
        return logits

    from trueno.llm import Sampler

    gen = generate_tokens(
        model,
        [1, 5, 6],
        max_tokens=10,
        sampler=Sampler(temperature=0, processors=[force_eos_after_two]),
    )
    assert len(list(gen)) == 2 and gen.stats.stop_reason == "eos"


def test_prompt_longer_than_context_is_typed_error(tiny_model_path):
    small = Model.load(tiny_model_path("llama")[0], ctx_size=6)
    with pytest.raises(ContextLengthError, match="context holds 6"):
        list(generate_tokens(small, list(range(1, 8)), max_tokens=2))


def test_generation_stops_when_the_context_is_full(tiny_model_path):
    small = Model.load(tiny_model_path("llama")[0], ctx_size=8)
    gen = generate_tokens(small, [1, 2, 3], max_tokens=50, temperature=0)
    assert len(list(gen)) == 6 and gen.stats.stop_reason == "context"


def test_reuse_cache_gives_the_same_tokens(model):
    a = list(generate_tokens(model, [1, 5, 9, 33, 2, 8], max_tokens=5, temperature=0))
    list(generate_tokens(model, [1, 5, 9, 40], max_tokens=2, temperature=0))
    gen = generate_tokens(model, [1, 5, 9, 33, 2, 8], max_tokens=5, temperature=0, reuse_cache=True)
    assert list(gen) == a
    assert gen.stats.n_cached == 3


def test_seeded_sampling_is_reproducible(model):
    def run(seed):
        return list(
            generate_tokens(
                model,
                [1, 5],
                max_tokens=8,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                min_p=0.0,
                seed=seed,
            )
        )

    assert run(11) == run(11)


def test_trace_nests_generate_token_layer_op(model):
    with trace.capture() as cap:
        list(generate_tokens(model, [1, 5, 9], max_tokens=3, temperature=0))
    spans = cap.spans
    by_id = {s["id"]: s for s in spans}
    names = {s["name"] for s in spans}
    assert {"generate", "prefill", "token", "layer"} <= names
    layer_in_token = [
        s
        for s in spans
        if s["name"] == "layer" and by_id.get(s["parent"], {}).get("name") == "token"
    ]
    assert layer_in_token, "decode layers should nest inside token spans"
    token = by_id[layer_in_token[0]["parent"]]
    assert by_id[token["parent"]]["name"] == "generate"


def test_trace_records_attention_ops_inside_layers(model):
    with trace.capture() as cap:
        list(generate_tokens(model, [1, 5, 9], max_tokens=2, temperature=0))
    by_id = {s["id"]: s for s in cap.spans}
    attention = [s for s in cap.spans if s["name"] == "attention"]
    n_layers = model.config.n_layers
    assert len(attention) == 2 * n_layers  # prefill + one decode step
    assert all(by_id[s["parent"]]["name"] == "layer" for s in attention)
    assert all(s["category"] == "op" and s["flops"] > 0 for s in attention)


def test_streamed_text_never_splits_a_utf8_character(model):
    from trueno.llm.generate import GenerationStats, _texts

    tok = model.tokenizer
    ids = tok.encode("caf\u00e9 the", add_special=False)
    b1, b2 = tok.token_id("<0xC3>"), tok.token_id("<0xA9>")
    assert b1 in ids and b2 in ids  # "é" falls back to its two UTF-8 bytes
    pieces = list(_texts(tok, iter(ids), (), GenerationStats()))
    assert "".join(pieces) == " caf\u00e9 the"  # mid-stream: the SPM space prefix stays
    assert all("\ufffd" not in p for p in pieces)
    assert "\u00e9" in next(p for p in pieces if "\u00e9" in p)  # arrives whole


def test_stop_string_held_back_across_pieces(model):
    from trueno.llm.generate import GenerationStats, _texts

    tok = model.tokenizer
    ids = tok.encode("the cat sat", add_special=False)
    stats = GenerationStats()
    text = "".join(_texts(tok, iter(ids), ("cat s",), stats))
    assert text == " the " and stats.stop_reason == "stop"
