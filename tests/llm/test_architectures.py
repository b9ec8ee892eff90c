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
from llm_models import assert_logits_close, permute_qk, spm_vocab_metadata, write_gguf

from trueno.gguf.constants import GGMLType, Keys
from trueno.llm import Model
from trueno.llm.config import Config

TOKENS = [1, 5, 17, 3, 42, 8, 63, 0, 12, 12, 30, 7]  # longer than gemma2's window of 4
VOCAB, DIM, HIDDEN, CTX = 64, 32, 64, 64
PHI3_ORIG_CTX = 16  # LongRoPE: long factors past this many positions

# arch: (transformers config class, model class, config kwargs beyond the shared ones)
HF = {
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM",
              dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                   tie_word_embeddings=True)),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               dict(num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                    query_pre_attn_scalar=16, sliding_window=4, attn_logit_softcapping=4.0,
                    final_logit_softcapping=20.0, tie_word_embeddings=True)),
    "granite": ("GraniteConfig", "GraniteForCausalLM",
                dict(num_attention_heads=4, num_key_value_heads=2, embedding_multiplier=3.0,
                     residual_multiplier=0.5, attention_multiplier=0.3, logits_scaling=2.0,
                     tie_word_embeddings=False)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM",
              dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM",
             dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                  original_max_position_embeddings=PHI3_ORIG_CTX)),
    "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM",
                dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)),
}  # fmt: skip
ARCHS = tuple(HF)
LLAMA_PERMUTED = ("granite", "smollm3")  # converters derived from LlamaModel permute Q/K rows
GEMMA_NORM_SHIFT = ("gemma2",)  # the converter stores norm weights as 1 + w
N_LAYERS = 4  # gemma2 alternates sliding/global; smollm3's 4th layer has no RoPE
ROPE_BASE = 10000.0
EPS = 1e-6


def _phi3_rope(rng) -> dict:
    half = DIM // 4 // 2  # head_dim 8, all of it rotated
    return {
        "rope_type": "longrope", "rope_theta": ROPE_BASE,
        "short_factor": (1.0 + rng.uniform(0, 0.5, half)).tolist(),
        "long_factor": (1.0 + rng.uniform(1.0, 6.0, half)).tolist(),
        "original_max_position_embeddings": PHI3_ORIG_CTX,
    }  # fmt: skip


def hf_model(arch: str, seed: int = 0):
    """A transformers model of ``arch`` with random weights (norms too, away from 1)."""
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch)")
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    cfg_name, cls_name, extra = HF[arch]
    if not hasattr(transformers, cfg_name):
        pytest.skip(f"transformers {transformers.__version__} has no {cfg_name}")
    rng = np.random.default_rng(seed)
    kwargs = dict(
        vocab_size=VOCAB, hidden_size=DIM, intermediate_size=HIDDEN,
        num_hidden_layers=N_LAYERS, rms_norm_eps=EPS, max_position_embeddings=CTX,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, attn_implementation="eager", **extra,
    )  # fmt: skip
    kwargs["rope_parameters"] = (
        _phi3_rope(rng) if arch == "phi3" else {"rope_type": "default", "rope_theta": ROPE_BASE}
    )
    cfg = getattr(transformers, cfg_name)(**kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(cfg).eval()
    state = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        shape = tuple(t.shape)
        if name.endswith("norm.weight"):
            base = 0.0 if arch in GEMMA_NORM_SHIFT else 1.0
            w = base + 0.2 * rng.standard_normal(shape)
        elif name == "model.embed_tokens.weight":
            w = rng.standard_normal(shape)
        else:
            w = rng.standard_normal(shape) / math.sqrt(shape[-1])
        state[name] = torch.from_numpy(np.asarray(w, np.float32))
    model.load_state_dict(state, strict=False)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    return torch, model


_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.qkv_proj": "attn_qkv",  # phi3
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "pre_feedforward_layernorm": "ffn_norm",  # gemma2
    "post_feedforward_layernorm": "post_ffw_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.gate_up_proj": "ffn_up",  # phi3: gate|up as one (2F, D) tensor
    "mlp.down_proj": "ffn_down",
}


def to_gguf(arch: str, model) -> tuple[dict, dict, dict]:
    """(metadata, tensors, origin) of ``model`` as convert_hf_to_gguf.py writes it; origin
    maps each matrix's GGUF name to (HF name, Q/K head count it was permuted by, or 0)."""
    cfg = model.config
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or DIM // heads
    post_attn = "post_attention_norm" if arch in ("gemma2", "olmo2") else "ffn_norm"
    tensors, origin = {}, {}
    for name, t in model.state_dict().items():
        w = t.detach().numpy().astype(np.float32)
        if name == "lm_head.weight":
            if cfg.tie_word_embeddings:
                continue
            gname = "output.weight"
        elif name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        else:
            _, _, i, rest = name.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            short = post_attn if module == "post_attention_layernorm" else _LAYER_NAMES[module]
            gname = f"blk.{i}.{short}.{kind}"
        permuted = 0
        if arch in LLAMA_PERMUTED and name.endswith(("q_proj.weight", "k_proj.weight")):
            permuted = heads if "q_proj" in name else kv_heads
            w = permute_qk(w, permuted)
        if arch in GEMMA_NORM_SHIFT and name.endswith("norm.weight"):
            w = w + np.float32(1.0)
        tensors[gname] = np.ascontiguousarray(w)
        if w.ndim == 2:
            origin[gname] = (name, permuted)

    def k(key):
        return Keys.arch(key, arch)

    md = {
        Keys.ARCHITECTURE: arch,
        k(Keys.CONTEXT_LENGTH): CTX,
        k(Keys.EMBEDDING_LENGTH): DIM,
        k(Keys.BLOCK_COUNT): N_LAYERS,
        k(Keys.FEED_FORWARD_LENGTH): HIDDEN,
        k(Keys.HEAD_COUNT): heads,
        k(Keys.HEAD_COUNT_KV): kv_heads,
        k(Keys.LAYERNORM_RMS_EPS): EPS,
        k(Keys.ROPE_FREQ_BASE): ROPE_BASE,
        k(Keys.ROPE_DIMENSION_COUNT): head_dim,
        k(Keys.KEY_LENGTH): head_dim,
        k(Keys.VALUE_LENGTH): head_dim,
        **spm_vocab_metadata(),
    }
    if arch == "gemma2":
        md[k(Keys.ATTN_LOGIT_SOFTCAPPING)] = cfg.attn_logit_softcapping
        md[k(Keys.FINAL_LOGIT_SOFTCAPPING)] = cfg.final_logit_softcapping
        md[k(Keys.SLIDING_WINDOW)] = cfg.sliding_window
    if arch == "granite":
        md[k(Keys.ATTENTION_SCALE)] = cfg.attention_multiplier
        md[k(Keys.EMBEDDING_SCALE)] = cfg.embedding_multiplier
        md[k(Keys.RESIDUAL_SCALE)] = cfg.residual_multiplier
        md[k(Keys.LOGIT_SCALE)] = cfg.logits_scaling
    if arch == "phi3":  # Phi3MiniModel: the factors as tensors, the attention factor as a key
        rope = cfg.rope_parameters
        scale = CTX / PHI3_ORIG_CTX
        md[k(Keys.ROPE_SCALING_ORIG_CTX)] = PHI3_ORIG_CTX
        md[k(Keys.ROPE_SCALING_ATTN_FACTOR)] = math.sqrt(
            1 + math.log(scale) / math.log(PHI3_ORIG_CTX)
        )
        tensors["rope_factors_long.weight"] = np.asarray(rope["long_factor"], np.float32)
        tensors["rope_factors_short.weight"] = np.asarray(rope["short_factor"], np.float32)
    return md, tensors, origin


@pytest.fixture(scope="module")
def arch_model(tmp_path_factory):
    """``arch_model(arch) -> (gguf path, torch, transformers model)``, made once per module."""
    cache: dict = {}

    def make(arch: str):
        if arch not in cache:
            torch, hf = hf_model(arch)
            md, tensors, _ = to_gguf(arch, hf)
            path = write_gguf(tmp_path_factory.mktemp(arch) / f"{arch}.gguf", md, tensors)
            cache[arch] = (path, torch, hf)
        return cache[arch]

    return make


def hf_logits(torch, hf, tokens) -> np.ndarray:
    with torch.no_grad():
        return hf(torch.tensor([tokens])).logits[0].numpy()


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


def _quantized(arch: str, hf, torch, qtype: GGMLType):
    """The GGUF of ``hf`` with every matrix in ``qtype``, and ``hf`` reloaded with those
    blocks dequantized by gguf-py (the independent reference): both hold the same weights."""
    gguf = pytest.importorskip("gguf", reason="gguf-py not installed")
    from trueno.quant import quantize

    md, tensors, origin = to_gguf(arch, hf)
    state = {}
    for gname, (hf_name, permuted) in origin.items():
        w = tensors[gname]
        blocks = quantize(w, qtype)
        tensors[gname] = (blocks, qtype, w.shape)
        back = np.asarray(gguf.quants.dequantize(np.asarray(blocks), qtype), np.float32)
        back = back.reshape(w.shape)
        if permuted:  # undo the converter's row permutation (rows of one head pair swapped)
            n = permuted
            back = back.reshape(n, back.shape[0] // n // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
        state[hf_name] = torch.from_numpy(np.ascontiguousarray(back))
    ref = type(hf)(hf.config).eval()
    full = {**hf.state_dict(), **state}
    if hf.config.tie_word_embeddings:  # the head is the (dequantized) embedding table
        full["lm_head.weight"] = full["model.embed_tokens.weight"]
    ref.load_state_dict(full)
    return md, tensors, ref


@pytest.mark.parametrize("arch", ARCHS)
def test_q8_0_weights_match_transformers_over_the_same_blocks(arch, arch_model, tmp_path):
    """Prefill of more than MATVEC_ROWS tokens (dequantize + BLAS) tracks transformers over
    the dequantized blocks at the f32 bound; decode's int8-activation matvecs at the bound of
    test_model's quantized test."""
    _, torch, hf = arch_model(arch)
    md, tensors, ref = _quantized(arch, hf, torch, GGMLType.Q8_0)
    path = write_gguf(tmp_path / "q8.gguf", md, tensors)
    model = Model.load(path, ctx_size=PHI3_ORIG_CTX, cache_type="f32")
    assert model.weights.layers[0].w_down.ggml_type == GGMLType.Q8_0
    tokens = (TOKENS * 2)[:14]
    expect = hf_logits(torch, ref, tokens)
    assert_logits_close(model.logits(tokens), expect, rel=1e-4)
    model.reset()
    model.prefill(tokens[:3])
    steps = [model.decode(tok).copy() for tok in tokens[3:]]
    assert_logits_close(np.array(steps), expect[3:], rel=3e-2)


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_decode_equals_alone(arch, arch_model):
    from trueno.llm.batch import BatchEngine, BatchSequence
    from trueno.llm.generate import generate_tokens
    from trueno.llm.sampler import Sampler

    path, _, _ = arch_model(arch)
    model = Model.load(path)
    prompts = [[1, 5, 9, 13], [1, 30, 31, 32, 33, 34, 35], [1, 7]]
    expect = []
    for p in prompts:
        model.reset()
        expect.append(list(generate_tokens(model, p, max_tokens=8, temperature=0.0)))
    engine = BatchEngine(model, n_slots=3)
    got = engine.run([BatchSequence(p, 8, Sampler(temperature=0.0)) for p in prompts])
    assert got == expect


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


def test_a_runtime_without_softcap_kernels_refuses_gemma2(arch_model):
    from dataclasses import replace

    from trueno.errors import UnsupportedError
    from trueno.llm import runtime as runtimes

    path, _, _ = arch_model("gemma2")
    no_cap = replace(runtimes.cpu(), name="nocap", attn_softcap=False)
    with pytest.raises(UnsupportedError, match="softcap"):
        Model.load(path, device=no_cap)
    Model.load(arch_model("qwen3")[0], device=no_cap)  # no softcap: accepted
