"""Batched decode (trueno.llm.batch) yields exactly the tokens of a lone generate_tokens."""

from __future__ import annotations

import llm_models
import pytest
from llm_models import (
    assert_batched_logprobs_equal_alone,
    assert_logits_close,
    gguf_metadata,
    gguf_tensors,
    random_hf_state,
    run_batch,
    spm_vocab_metadata,
    write_gguf,
)

import trueno.quant.prepared as prepared
from trueno.errors import ContextLengthError, ModelError
from trueno.gguf.constants import GGMLType
from trueno.llm import Model
from trueno.llm.batch import BatchEngine, BatchSequence
from trueno.llm.generate import generate_tokens
from trueno.llm.sampler import Sampler
from trueno.quant import grouped, kernels, quantize, simd

PROMPTS = [[1, 5, 9, 13], [1, 30, 31, 32, 33, 34, 35], [1, 7], [1, 40, 41, 42, 43, 44, 45, 46, 47]]


def _alone(model, prompt, n, **sampling):
    model.reset()
    return list(generate_tokens(model, prompt, max_tokens=n, **sampling))


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_greedy_batched_equals_alone(tiny_model_path, arch):
    path, _ = tiny_model_path(arch)
    model = Model.load(path)
    expect = [_alone(model, p, 12, temperature=0.0) for p in PROMPTS]
    engine = BatchEngine(model, n_slots=4)
    seqs = [BatchSequence(p, 12, Sampler(temperature=0.0), logprobs=3) for p in PROMPTS]
    events = run_batch(engine, seqs)
    assert [s.tokens for s in seqs] == expect
    assert engine.slots_in_use == 0 and not engine.busy
    assert_batched_logprobs_equal_alone(model, seqs, events)  # and every logit too


@pytest.mark.parametrize("cache_type", ["f16", "bf16"])
def test_slots_keep_the_models_cache_type(tiny_model_path, cache_type):
    """An f16 (bf16) model's slots are f16 (bf16) caches (``trueno serve --cache-type f16``),
    and batching still changes no token: each sequence attends over its own slot."""
    path, _ = tiny_model_path("gemma3")  # head_dim 16: bf16 products where the host has them
    model = Model.load(path, cache_type=cache_type)
    expect = [_alone(model, p, 8, temperature=0.0) for p in PROMPTS[:3]]
    engine = BatchEngine(model, n_slots=3)
    assert {s.cache.cache_type for s in engine.slots} == {cache_type}
    got = engine.run([BatchSequence(p, 8, Sampler(temperature=0.0)) for p in PROMPTS[:3]])
    assert got == expect


def test_batched_attention_spans_report_each_slots_kv_bytes(tiny_model_path):
    """Traced, a batched decode step records one attention span per sequence and layer, each
    with the KV bytes that sequence's own slot gave it (its depth; a window layer's window)."""
    from trueno import trace

    path, _ = tiny_model_path("gemma3")  # window 4 on five of six layers
    model = Model.load(path, cache_type="f16")
    c = model.config
    engine = BatchEngine(model, n_slots=2)
    seqs = [engine.add(BatchSequence(p, 4, Sampler(temperature=0.0), stop_at_eog=False))
            for p in (PROMPTS[2], PROMPTS[3])]  # fmt: skip
    engine.step()  # both prompts prefilled, first tokens sampled
    depths = [engine.slots[s.slot].cache.n for s in seqs]
    assert depths == [2, 9]
    with trace.capture() as cap:
        engine.step()  # one batched decode: positions 2 and 9
    spans = [s for s in cap.spans if s["name"] == "attention"]
    assert len(spans) == 2 * c.n_layers
    row = 2 * c.n_kv_heads * c.head_dim * 2  # one position's keys and values, f16
    want = []
    for layer in range(c.n_layers):
        w = c.layer_window(layer)
        want += [(min(d + 1, w) if w > 0 else d + 1) * row for d in depths]
    assert [s["bytes"] for s in spans] == want
    assert min(want) < max(want)  # two depths, windowed and global layers: all told apart


def test_seeded_batched_equals_alone_with_more_sequences_than_slots(tiny_model_path):
    path, _ = tiny_model_path("llama")
    model = Model.load(path)
    opts = dict(temperature=0.9, top_k=20, top_p=0.9, min_p=0.0, repeat_penalty=1.1)
    seqs_args = [(p, 10 + i, 100 + i) for i, p in enumerate(PROMPTS + PROMPTS[::-1])]
    expect = [_alone(model, p, n, seed=seed, **opts) for p, n, seed in seqs_args]
    engine = BatchEngine(model, n_slots=3)
    seqs = [BatchSequence(p, n, Sampler(seed=seed, **opts)) for p, n, seed in seqs_args]
    assert engine.run(seqs) == expect
    assert all(s.finish_reason in ("length", "stop") for s in seqs)


def test_prefix_reuse_and_staggered_arrival(tiny_model_path):
    path, _ = tiny_model_path("qwen2")
    model = Model.load(path)
    long = [1] + [10 + (i % 40) for i in range(60)]
    expect = _alone(model, long, 8, temperature=0.0)
    engine = BatchEngine(model, n_slots=2)
    first = engine.add(BatchSequence(long, 8))
    for _ in range(3):
        engine.step()
    second = engine.add(BatchSequence(PROMPTS[1], 8))
    while engine.busy:
        engine.step()
    assert first.tokens == expect
    assert second.tokens == _alone(model, PROMPTS[1], 8, temperature=0.0)
    again = engine.run([BatchSequence(long, 8)])
    assert again == [expect]
    assert engine.running == [] and sorted(engine.free) == [0, 1]


def test_cancel_frees_the_slot_within_a_step(tiny_model_path):
    path, _ = tiny_model_path("llama")
    engine = BatchEngine(Model.load(path), n_slots=2)
    a = engine.add(BatchSequence(PROMPTS[0], 50, stop_at_eog=False))
    b = engine.add(BatchSequence(PROMPTS[1], 5, stop_at_eog=False))
    engine.step()
    engine.step()
    assert engine.slots_in_use == 2
    a.cancel()
    events = engine.step()
    assert any(e.seq is a and e.finish_reason == "cancelled" for e in events)
    assert engine.slots_in_use == 1
    while engine.busy:
        engine.step()
    assert a.finish_reason == "cancelled" and b.finish_reason == "length"
    assert len(b.tokens) == 5 and engine.slots_in_use == 0


def test_full_slot_stops_with_length(tiny_model_path):
    path, _ = tiny_model_path("llama")
    model = Model.load(path, ctx_size=16)
    engine = BatchEngine(model, n_slots=1)
    (seq,) = [BatchSequence(PROMPTS[0], 100, stop_at_eog=False)]
    engine.run([seq])
    assert seq.finish_reason == "length"
    assert len(seq.prompt) + len(seq.tokens) == 17  # 16 positions ran, the last token sampled


def test_bad_sequences_are_typed_errors(tiny_model_path):
    path, _ = tiny_model_path("llama")
    engine = BatchEngine(Model.load(path, ctx_size=16), n_slots=1)
    with pytest.raises(ContextLengthError):
        engine.add(BatchSequence(list(range(1, 20)), 4))
    with pytest.raises(ModelError):
        engine.add(BatchSequence([], 4))
    with pytest.raises(ModelError):
        engine.add(BatchSequence([1, 2], 0))
    with pytest.raises(ModelError):
        BatchEngine(engine.model, n_slots=0)


def test_a_first_token_is_emitted_before_the_steps_decode(tiny_model_path):
    path, _ = tiny_model_path("llama")
    engine = BatchEngine(Model.load(path), n_slots=2)
    running = engine.add(BatchSequence(PROMPTS[0], 20, stop_at_eog=False))
    engine.step()
    late = engine.add(BatchSequence(PROMPTS[3], 20, stop_at_eog=False))
    batches = []
    events = engine.step(emit=batches.append)
    assert len(batches) == 2  # after the prefill chunk, then after the decode
    assert [(e.seq, e.token) for e in batches[0]] == [(late, late.tokens[0])]
    assert [e.seq for e in batches[1]] == [running]
    assert [e for b in batches for e in b] == events  # each event exactly once


def test_the_prefill_budget_takes_whole_chunks_oldest_first(tiny_model_path):
    path, _ = tiny_model_path("llama")
    model = Model.load(path)
    prompts = [[1] + [20 + i] * 9 for i in range(3)]  # 10 tokens each
    expect = [_alone(model, p, 6, temperature=0.0) for p in prompts]
    engine = BatchEngine(model, n_slots=3, prefill_budget=15)
    seqs = [engine.add(BatchSequence(p, 6)) for p in prompts]
    engine.step()
    assert [s.n_prefilled for s in seqs] == [10, 0, 0]  # the second's 10 > the 5 left
    engine.step()
    assert [s.n_prefilled for s in seqs] == [10, 10, 0]
    while engine.busy:
        engine.step()
    assert [s.tokens for s in seqs] == expect


def test_a_prefix_cached_in_another_slot_is_copied(tiny_model_path):
    path, _ = tiny_model_path("llama")
    model = Model.load(path)
    system = [1] + [10 + (i % 30) for i in range(40)]
    a_prompt, b_prompt = system + [50, 51], system + [60, 61, 62]
    engine = BatchEngine(model, n_slots=2)
    a = engine.add(BatchSequence(a_prompt, 30, stop_at_eog=False))
    engine.step()
    assert not a.prefilling
    b = engine.add(BatchSequence(b_prompt, 8))
    engine.step()  # b's slot is empty: the shared entries come from a's running slot
    assert a.slot != b.slot and b.n_cached == len(system)
    while engine.busy:
        engine.step()
    assert b.tokens == _alone(model, b_prompt, 8, temperature=0.0)
    assert a.tokens == _alone(model, a_prompt, 30, temperature=0.0, stop_at_eog=False)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])  # adjacent pairs, neox halves
def test_ctx_shift_keeps_n_keep_and_drops_half_of_the_rest(tiny_model_path, arch):
    """--ctx-shift: a full slot keeps BOS and n_keep tokens, drops half of the rest, and the
    moved keys are rotated to their new positions: layer 0's keys (which depend on the token
    alone) then equal those a fresh prefill of the kept tokens computes there."""
    import numpy as np

    path, _ = tiny_model_path(arch)
    ctx = 32
    model = Model.load(path, ctx_size=ctx, cache_type="f32")
    engine = BatchEngine(model, n_slots=1, ctx_shift=True)
    seq = engine.add(BatchSequence(PROMPTS[0], 60, n_keep=2, stop_at_eog=False))
    slot = engine.slots[0]
    while slot.cache.n < ctx:
        engine.step()
    before = list(engine.slot_tokens[0])
    assert len(before) == ctx and seq.finish_reason is None
    engine.step()  # full: shift, then decode the pending token
    n_keep, n_discard = 2 + 1, (ctx - 3) // 2  # BOS is kept on top of n_keep
    kept = before[:n_keep] + before[n_keep + n_discard :]
    assert engine.slot_tokens[0] == kept + [engine.slot_tokens[0][-1]]
    assert slot.cache.n == len(kept) + 1 and seq.finish_reason is None
    model.reset()
    model.prefill(kept)
    fresh = model.state.cache
    m = len(kept)
    np.testing.assert_allclose(slot.cache.k[0, :, :m], fresh.k[0, :, :m], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(slot.cache.v[0, :, :m], fresh.v[0, :, :m], rtol=1e-4, atol=1e-5)
    while engine.busy:
        engine.step()
    assert seq.finish_reason == "length" and len(seq.tokens) == 60  # past the context
    # the entries after n_keep were computed with dropped tokens in view: not reused
    again = engine.add(BatchSequence(engine.slot_tokens[0][:12], 2, stop_at_eog=False))
    engine.step()
    assert again.n_cached == n_keep


def test_ctx_shift_keeps_at_most_ctx_minus_4(tiny_model_path):
    """n_keep -1 keeps the whole prompt, but never more than ctx - 4 tokens (llama.cpp's
    clamp), so a full slot always has something to drop."""
    path, _ = tiny_model_path("llama")
    model = Model.load(path, ctx_size=16)
    engine = BatchEngine(model, n_slots=1, ctx_shift=True)
    prompt = [1] + list(range(20, 34))  # 15 tokens
    seq = engine.add(BatchSequence(prompt, 40, n_keep=-1, stop_at_eog=False))
    while engine.busy:
        engine.step()
        assert engine.slot_tokens[0][:12] == prompt[:12]
        assert engine.slots[0].cache.n <= 16
    assert seq.finish_reason == "length" and len(seq.tokens) == 40


def test_cancel_during_prefill_frees_the_slot_at_the_next_step(tiny_model_path):
    """A sequence cancelled while its prompt is prefilling (one chunk per step here) is
    dropped at the next step: no further chunk runs and its slot is free."""
    from trueno.llm.model import PREFILL_CHUNK

    path, _ = tiny_model_path("llama")
    model = Model.load(path, ctx_size=4 * PREFILL_CHUNK)
    engine = BatchEngine(model, n_slots=2, prefill_budget=1)
    running = engine.add(BatchSequence(PROMPTS[0], 40, stop_at_eog=False))
    engine.step()
    long = engine.add(BatchSequence([1] + [10 + i % 50 for i in range(3 * PREFILL_CHUNK)], 5))
    engine.step()
    done = long.n_prefilled  # one chunk, after the BOS it shares with the other slot
    assert long.prefilling and done == long.n_cached + PREFILL_CHUNK
    assert engine.slots_in_use == 2
    long.cancel()
    events = engine.step()
    assert [e.finish_reason for e in events if e.seq is long] == ["cancelled"]
    assert long.n_prefilled == done and engine.slots_in_use == 1
    assert [e.seq for e in events if e.token is not None] == [running]  # it kept going


def test_untraced_steps_read_no_clock(tiny_model_path, monkeypatch):
    """Tracing off costs nothing per token: an untraced sequence's steps take no timestamps."""
    import trueno.llm.batch as batch

    path, _ = tiny_model_path("llama")
    engine = BatchEngine(Model.load(path), n_slots=2)
    calls = []
    real = batch.perf_counter_ns
    monkeypatch.setattr(batch, "perf_counter_ns", lambda: calls.append(1) or real())
    engine.run([BatchSequence(p, 6, stop_at_eog=False) for p in PROMPTS[:2]])
    assert calls == []
    traced = BatchSequence(PROMPTS[2], 6, stop_at_eog=False, spans=[])
    engine.run([traced, BatchSequence(PROMPTS[3], 6, stop_at_eog=False)])
    assert calls and [name for name, *_ in traced.spans].count("decode") == 5


def test_column_panels_keep_batched_equal_alone(tmp_path, monkeypatch):
    """A K-quant model whose FFN down rows run as column panels (prepared.PANEL_COLS, here
    lowered to 256 columns): its logits track the same model read whole, and a batch still
    yields the lone run's tokens and logprobs (every panel sum in one order)."""
    if not simd.available():
        pytest.skip("no SIMD quant kernels: no fused driver to split")
    if grouped.applies("Q4_K", kernels.chosen_level(), (256, 512)):
        pytest.skip("Q4_K is re-laid in groups of 16 rows at this host's level")
    big = dict(llm_models.TINY["llama"], dim=256, hidden=512, head_dim=64)
    monkeypatch.setitem(llm_models.TINY, "llama", big)
    tensors = gguf_tensors("llama", random_hf_state("llama", seed=3))
    for name, w in list(tensors.items()):
        if w.ndim == 2 and name != "token_embd.weight":  # every column count a multiple of 256
            t = GGMLType.Q6_K if "ffn_down" in name and "blk.1." in name else GGMLType.Q4_K
            tensors[name] = (quantize(w, t), t, w.shape)
    path = write_gguf(tmp_path / "k.gguf", {**gguf_metadata("llama"), **spm_vocab_metadata()},
                      tensors)  # fmt: skip
    whole = Model.load(path)
    monkeypatch.setattr(prepared, "PANEL_COLS", 256)
    model = Model.load(path)
    downs = [layer.w_down for layer in model.weights.layers]
    assert [m.ready().prepared.panels for m in downs] == [2, 2]  # Q4_K, then Q6_K
    assert whole.weights.layers[0].w_down.ready().prepared.panels == 0
    tokens = PROMPTS[3] * 2
    assert_logits_close(model.logits(tokens), whole.logits(tokens), rel=1e-4)
    model.reset()
    expect = [_alone(model, p, 10, temperature=0.0) for p in PROMPTS]
    engine = BatchEngine(model, n_slots=4)
    seqs = [BatchSequence(p, 10, Sampler(temperature=0.0), logprobs=3) for p in PROMPTS]
    events = run_batch(engine, seqs)
    assert [s.tokens for s in seqs] == expect
    assert_batched_logprobs_equal_alone(model, seqs, events)
