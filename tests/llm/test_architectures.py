"""qwen3, gemma2, granite, olmo2, phi3 and smollm3: tiny random transformers models, written
to GGUF as llama.cpp's convert_hf_to_gguf.py writes them, against transformers' own forward.

Each architecture's differences are fields of trueno's Config (see trueno/llm/config.py);
these tests check that one forward pass with those fields gives transformers' logits, for
prefill and KV-cache decode, F32 and Q8_0 weights, alone and in the batch engine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from llm_archs import (
    ARCHS,
    CTX,
    DIM,
    LLAMA_PERMUTED,
    N_LAYERS,
    PHI3_ORIG_CTX,
    hf_logits,
    quantized,
)
from llm_models import (
    assert_batched_logprobs_equal_alone,
    assert_logits_close,
    run_batch,
    write_gguf,
)

from trueno.gguf.constants import GGMLType, Keys
from trueno.llm import Model
from trueno.llm.config import GEMMA2_27B_LAYERS, Config

TOKENS = [1, 5, 17, 3, 42, 8, 63, 0, 12, 12, 30, 7]  # longer than gemma2's window of 4


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_transformers(arch, arch_model):
    path, torch, hf = arch_model(arch)
    model = Model.load(path, ctx_size=PHI3_ORIG_CTX, cache_type="f32")
    assert model.config.arch == arch
    assert_logits_close(model.logits(TOKENS), hf_logits(torch, hf, TOKENS))


@pytest.mark.parametrize("arch", ARCHS)
def test_decode_with_kv_cache_equals_full_sequence(arch, arch_model):
    path, _, _ = arch_model(arch)
    model = Model.load(path, cache_type="f32")
    full = model.logits(TOKENS)
    model.reset()
    steps = [model.prefill(TOKENS[:3])]
    steps += [model.decode(tok).copy() for tok in TOKENS[3:]]
    np.testing.assert_allclose(np.array(steps), full[2:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("qtype", [GGMLType.Q8_0, GGMLType.Q4_0], ids=["Q8_0", "Q4_0"])
@pytest.mark.parametrize("arch", ARCHS)
def test_quantized_weights_match_transformers_over_the_same_blocks(
    arch, qtype, arch_model, tmp_path, monkeypatch
):
    """Prefill of more than MATVEC_ROWS tokens by dequantize + BLAS tracks transformers over
    the dequantized blocks at the f32 bound; by the int8 prefill GEMM (the default) and
    decode's int8-activation matvecs at the bound of test_model's quantized test."""
    from trueno.quant import int8mm

    _, torch, hf = arch_model(arch)
    md, tensors, ref = quantized(arch, hf, torch, qtype)
    path = write_gguf(tmp_path / "q.gguf", md, tensors)
    model = Model.load(path, ctx_size=PHI3_ORIG_CTX, cache_type="f32")
    assert model.weights.layers[0].w_down.ggml_type == qtype
    tokens = (TOKENS * 2)[:14]
    expect = hf_logits(torch, ref, tokens)
    assert_logits_close(model.logits(tokens), expect, rel=3e-2)
    model.reset()
    with monkeypatch.context() as m:
        m.setattr(int8mm, "ENABLED", False)
        assert_logits_close(model.logits(tokens), expect, rel=1e-4)
    model.reset()
    model.prefill(tokens[:3])
    steps = [model.decode(tok).copy() for tok in tokens[3:]]
    assert_logits_close(np.array(steps), expect[3:], rel=3e-2)


@pytest.mark.parametrize("qtype", [None, GGMLType.Q8_0], ids=["F32", "Q8_0"])
@pytest.mark.parametrize("arch", ARCHS)
def test_batched_decode_equals_alone(arch, qtype, arch_model, tmp_path):
    """The batch engine (the server's) gives each sequence the tokens, logprobs and top
    logprobs it gets alone: F32 and Q8_0 (the multi-vector kernels) weights."""
    from trueno.llm.batch import BatchEngine, BatchSequence
    from trueno.llm.generate import generate_tokens
    from trueno.llm.sampler import Sampler

    path, torch, hf = arch_model(arch)
    if qtype is not None:
        md, tensors, _ = quantized(arch, hf, torch, qtype)
        path = write_gguf(tmp_path / "q.gguf", md, tensors)
    model = Model.load(path)
    prompts = [[1, 5, 9, 13], [1, 30, 31, 32, 33, 34, 35], [1, 7], [1, 40, 41, 42]]
    opts = dict(temperature=0.9, top_k=30, top_p=0.95, min_p=0.0)
    expect = []
    for i, p in enumerate(prompts):
        model.reset()
        expect.append(list(generate_tokens(model, p, max_tokens=8, seed=10 + i, **opts)))
    assert len({tuple(t) for t in expect}) > 1
    engine = BatchEngine(model, n_slots=3)  # 4 sequences over 3 slots: one waits
    seqs = [BatchSequence(p, 8, Sampler(seed=10 + i, **opts), logprobs=3)
            for i, p in enumerate(prompts)]  # fmt: skip
    events = run_batch(engine, seqs)
    assert [s.tokens for s in seqs] == expect
    assert_batched_logprobs_equal_alone(model, seqs, events)


def test_phi3_rope_factors_are_chosen_by_the_context_size(arch_model):
    """llama.cpp picks LongRoPE's long factors when the context exceeds the original one;
    transformers when the sequence does: a 20-token sequence in a 64-token context takes the
    long set on both sides, 12 tokens in a 16-token context the short set."""
    path, torch, hf = arch_model("phi3")
    short = Model.load(path, ctx_size=PHI3_ORIG_CTX, cache_type="f32")
    long = Model.load(path, ctx_size=CTX, cache_type="f32")
    assert short.rope_factors is short.weights.rope_short
    assert long.rope_factors is long.weights.rope_long
    assert long.config.rope_attn_factor > 1.0
    tokens = (TOKENS * 2)[:20]
    assert_logits_close(long.logits(tokens), hf_logits(torch, hf, tokens))
    assert_logits_close(short.logits(TOKENS), hf_logits(torch, hf, TOKENS))
    # and the choice matters
    assert np.abs(long.logits(TOKENS) - short.logits(TOKENS)).max() > 1e-3


def test_phi3_partial_rotary_matches_transformers(tmp_path):
    """Phi-4-mini rotates 3/4 of each head (rope.dimension_count < key_length) and its
    LongRoPE factors cover only those dimensions: short and long factors both."""
    from llm_archs import hf_model, to_gguf

    torch, hf = hf_model("phi3", partial_rotary_factor=0.75)
    md, tensors, _ = to_gguf("phi3", hf)
    path = write_gguf(tmp_path / "phi4mini.gguf", md, tensors)
    short = Model.load(path, ctx_size=PHI3_ORIG_CTX, cache_type="f32")
    assert (short.config.rope_dim, short.config.head_dim) == (6, 8)
    assert_logits_close(short.logits(TOKENS), hf_logits(torch, hf, TOKENS))
    tokens = (TOKENS * 2)[:20]
    long = Model.load(path, ctx_size=CTX, cache_type="f32")
    assert_logits_close(long.logits(tokens), hf_logits(torch, hf, tokens))


def test_fused_phi3_tensors_are_used_in_place(arch_model):
    path, _, _ = arch_model("phi3")
    lw = Model.load(path).weights.layers[0]
    assert lw.wq is None and lw.w_gate is None
    assert lw.wqkv.name == "blk.0.attn_qkv.weight" and lw.w_gate_up.name == "blk.0.ffn_up.weight"


@pytest.mark.parametrize("arch", ARCHS)
def test_config_fields_from_metadata(arch, arch_model):
    path, _, hf = arch_model(arch)
    c = Model.load(path).config
    assert c.rope_neox == (arch not in LLAMA_PERMUTED)
    assert c.qk_norm == (arch == "qwen3") and c.qk_norm_full == (arch == "olmo2")
    assert c.pre_norms == (arch != "olmo2") and c.post_norms == (arch in ("gemma2", "olmo2"))
    assert [c.uses_rope(i) for i in range(N_LAYERS)] == (
        [True, True, True, False] if arch == "smollm3" else [True] * N_LAYERS
    )
    if arch == "gemma2":
        assert (c.attn_softcap, c.final_softcap) == (4.0, 20.0)
        assert [c.layer_window(i) for i in range(N_LAYERS)] == [4, 0, 4, 0]
        assert c.embed_scale == math.sqrt(DIM) and c.activation == "gelu_tanh"
    if arch == "granite":
        assert (c.embed_scale, c.residual_scale, c.attn_scale, c.logit_scale) == (
            3.0, 0.5, pytest.approx(0.3), 2.0)  # fmt: skip


def test_gemma2_27b_scales_queries_by_dim_over_heads():
    """GGUF has no query_pre_attn_scalar: llama.cpp takes dim / n_heads for the 46-layer 27B
    (its query_pre_attn_scalar is 144, head_dim 128), head_dim elsewhere."""
    md = {
        Keys.ARCHITECTURE: "gemma2", "gemma2.embedding_length": 4608, "gemma2.block_count": 46,
        "gemma2.feed_forward_length": 36864, "gemma2.attention.head_count": 32,
        "gemma2.attention.head_count_kv": 16, "gemma2.attention.key_length": 128,
        "gemma2.vocab_size": 256000,
    }  # fmt: skip
    c = Config.from_metadata(md)
    assert c.attn_scale == pytest.approx(1 / math.sqrt(144))
    assert (c.attn_softcap, c.final_softcap, c.sliding_window) == (50.0, 30.0, 4096)
    c9 = Config.from_metadata({**md, "gemma2.block_count": 42})
    assert c9.attn_scale == pytest.approx(1 / math.sqrt(128))


def test_gemma2_27b_query_scale_matches_transformers(tmp_path):
    """The 46-layer rule end to end: a tiny gemma2 of 46 layers whose head_dim (8) is not
    dim / n_heads (16), with transformers' query_pre_attn_scalar = 16 as the 27B's config
    has it (144 = 4608 / 32, head_dim 128): the same logits from a file that has no scalar."""
    from llm_archs import hf_model, to_gguf

    torch, hf = hf_model("gemma2", num_hidden_layers=GEMMA2_27B_LAYERS, head_dim=8,
                         query_pre_attn_scalar=DIM // 2)  # fmt: skip
    md, tensors, _ = to_gguf("gemma2", hf)
    model = Model.load(write_gguf(tmp_path / "g46.gguf", md, tensors), cache_type="f32")
    c = model.config
    assert (c.n_layers, c.n_heads, c.head_dim) == (GEMMA2_27B_LAYERS, 2, 8)
    assert c.attn_scale == pytest.approx(1 / math.sqrt(DIM // 2))  # not 1 / sqrt(head_dim)
    assert_logits_close(model.logits(TOKENS), hf_logits(torch, hf, TOKENS))


def test_a_runtime_without_softcap_kernels_refuses_gemma2(arch_model):
    from dataclasses import replace

    from trueno.errors import UnsupportedError
    from trueno.llm import runtime as runtimes

    path, _, _ = arch_model("gemma2")
    no_cap = replace(runtimes.cpu(), name="nocap", attn_softcap=False)
    with pytest.raises(UnsupportedError, match="softcap"):
        Model.load(path, device=no_cap)
    Model.load(arch_model("qwen3")[0], device=no_cap)  # no softcap: accepted


# each architecture's own fields, and the value that turns the feature off
FEATURES = [
    ("qwen3", "qk_norm", False),
    ("gemma2", "attn_softcap", 0.0),
    ("gemma2", "final_softcap", 0.0),
    ("gemma2", "sliding_window", 0),  # every layer global
    ("gemma2", "post_norms", False),
    ("gemma2", "embed_scale", 1.0),
    ("granite", "embed_scale", 1.0),
    ("granite", "residual_scale", 1.0),
    ("granite", "attention_scale", 0.0),
    ("granite", "logit_scale", 1.0),
    ("olmo2", "qk_norm_full", False),
    ("olmo2", "post_norms", False),
    ("smollm3", "nope_step", 0),
    ("phi3", "rope_attn_factor", 1.0),
]


@pytest.mark.parametrize("arch, field, off", FEATURES)
def test_each_feature_matters(arch, field, off, arch_model):
    """The same weights with one field turned off no longer give transformers' logits: the
    tiny models exercise every field (a field the forward pass ignored would fail here)."""
    from dataclasses import replace

    from trueno.gguf import load
    from trueno.llm.weights import Weights

    path, torch, hf = arch_model(arch)
    gf = load(path)
    config = Config.from_gguf(gf)
    assert getattr(config, field) != off
    plain = replace(config, **{field: off})
    model = Model(plain, Weights.from_gguf(gf, config), gf, path, ctx_size=PHI3_ORIG_CTX)
    ref = hf_logits(torch, hf, TOKENS)
    err = np.abs(model.logits(TOKENS) - ref).max() / np.abs(ref).max()
    assert err > 1e-3, f"{arch} without {field} still matches transformers ({err:.1e})"


@pytest.fixture(scope="module")
def llama_cpp_converted(arch_model, tmp_path_factory):
    """{arch: path} of every tiny model written by llama.cpp's convert_hf_to_gguf.py."""
    from llm_archs import llama_cpp_converted as convert

    root = tmp_path_factory.mktemp("llama_cpp_converted")
    return convert({arch: arch_model(arch)[2] for arch in ARCHS}, root)


@pytest.mark.slow  # one converter process for all six: ~30 s on a loaded host
@pytest.mark.parametrize("arch", ARCHS)
def test_llama_cpp_converted_file_matches_transformers(arch, arch_model, llama_cpp_converted):
    """The same transformers model written by llama.cpp's convert_hf_to_gguf.py (an
    independent writer: its tensor names, permutations, norm shifts and metadata keys)."""
    _, torch, hf = arch_model(arch)
    model = Model.load(llama_cpp_converted[arch], ctx_size=PHI3_ORIG_CTX, cache_type="f32")
    assert model.config.arch == arch
    assert_logits_close(model.logits(TOKENS), hf_logits(torch, hf, TOKENS))


@pytest.mark.parametrize("arch", ARCHS)
def test_prefill_attention_runs_in_tiles_and_matches_transformers(arch, arch_model, monkeypatch):
    """Model.prefill's attention is the tiled kernel (blocks of keys, running max and sum):
    with tiles of 3 keys, tasks of 2 queries and prompt chunks of 5 tokens, every chunk after
    the first attends at depth over tiles crossing the diagonal and gemma2's window edge,
    with its softcap on each tile; the logits stay transformers'."""
    from trueno.llm import model as model_mod
    from trueno.llm import prefill_attention

    path, torch, hf = arch_model(arch)
    model = Model.load(path, ctx_size=PHI3_ORIG_CTX, cache_type="f32")
    calls, kernel = [], prefill_attention.attend_chunk

    def spy(out, q, k_cache, v_cache, start, window, scale, groups, softcap, block, qb, level):
        calls.append((start, q.shape[0], window, block, qb, softcap))
        assert level == prefill_attention.LEVEL
        kernel(out, q, k_cache, v_cache, start, window, scale, groups, softcap, block, qb, level)

    monkeypatch.setattr(prefill_attention, "attend_chunk", spy)
    monkeypatch.setattr(prefill_attention, "KEY_BLOCK", 3)
    monkeypatch.setattr(prefill_attention, "QUERY_BLOCK", 2)
    monkeypatch.setattr(model_mod, "PREFILL_CHUNK", 5)
    assert_logits_close(model.logits(TOKENS), hf_logits(torch, hf, TOKENS))
    c = model.config
    assert len(calls) == 3 * c.n_layers  # chunks at 0, 5, 10; every layer
    assert {(start, T) for start, T, *_ in calls} == {(0, 5), (5, 5), (10, 2)}
    assert all(call[3:] == (3, 2, c.attn_softcap) for call in calls)
    assert any(window > 0 for _, _, window, *_ in calls) == (arch == "gemma2")
