"""Forward pass of tiny random llama / qwen2 / gemma3 models against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from llm_models import (
    TINY,
    assert_logits_close,
    gguf_metadata,
    gguf_tensors,
    random_hf_state,
    write_gguf,
)
from llm_reference import reference_logits

from trueno.errors import ContextLengthError, ModelError, UnsupportedError
from trueno.gguf.constants import Keys
from trueno.llm import Model

ARCHS = ("llama", "qwen2", "gemma3")
TOKENS = [1, 5, 17, 3, 42, 8, 63, 0, 12, 12, 30, 7]  # longer than gemma's window of 4


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_numpy_float64_reference(arch, tiny_model_path):
    path, _ = tiny_model_path(arch)
    model = Model.load(path, cache_type="f32")
    ours = model.logits(TOKENS)
    assert ours.dtype == np.float32 and ours.shape == (len(TOKENS), TINY[arch]["vocab"])
    assert_logits_close(ours, reference_logits(path, TOKENS))


def _hf_model(arch: str, sd: dict, rope_scaling: dict | None = None):
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0)")
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    p = TINY[arch]
    common = dict(
        vocab_size=p["vocab"],
        hidden_size=p["dim"],
        intermediate_size=p["hidden"],
        num_hidden_layers=p["layers"],
        num_attention_heads=p["heads"],
        num_key_value_heads=p["kv_heads"],
        head_dim=p["head_dim"],
        rms_norm_eps=p["eps"],
        max_position_embeddings=128,
        tie_word_embeddings=p["tied"],
        attn_implementation="eager",
    )
    if arch == "llama":
        rope = {"rope_type": "default", "rope_theta": p["rope_base"], **(rope_scaling or {})}
        cfg = transformers.LlamaConfig(rope_parameters=rope, **common)
        cls = transformers.LlamaForCausalLM
    elif arch == "qwen2":
        cfg = transformers.Qwen2Config(rope_theta=p["rope_base"], **common)
        cls = transformers.Qwen2ForCausalLM
    else:
        cfg = transformers.Gemma3TextConfig(
            rope_theta=p["rope_base"],
            rope_local_base_freq=10000.0,
            query_pre_attn_scalar=p["head_dim"],
            sliding_window=p["window"],
            **common,
        )
        cls = transformers.Gemma3ForCausalLM
    torch.manual_seed(0)
    model = cls(cfg).eval()
    state = {k: torch.from_numpy(v) for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
    if p["tied"]:
        model.tie_weights()
    return torch, model


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_hf_transformers(arch, tiny_model_path):
    path, sd = tiny_model_path(arch)
    torch, hf = _hf_model(arch, sd)
    with torch.no_grad():
        ref = hf(torch.tensor([TOKENS])).logits[0].numpy()
    assert_logits_close(Model.load(path, cache_type="f32").logits(TOKENS), ref)


@pytest.mark.parametrize("arch", ARCHS)
def test_decode_with_kv_cache_equals_full_sequence(arch, tiny_model_path):
    path, _ = tiny_model_path(arch)
    model = Model.load(path, cache_type="f32")
    full = model.logits(TOKENS)
    model.reset()
    steps = [model.prefill(TOKENS[:3])]
    for tok in TOKENS[3:]:
        steps.append(model.decode(tok).copy())
    np.testing.assert_allclose(np.array(steps), full[2:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_chunked_prefill_equals_one_batch(arch, tiny_model_path, monkeypatch):
    path, _ = tiny_model_path(arch)
    model = Model.load(path, cache_type="f32")
    full = model.logits(TOKENS)
    monkeypatch.setattr("trueno.llm.model.PREFILL_CHUNK", 5)
    np.testing.assert_allclose(model.logits(TOKENS), full, rtol=1e-5, atol=1e-5)


def test_config_derived_values(tiny_model_path):
    path, _ = tiny_model_path("gemma3")
    c = Model.load(path, cache_type="f32").config
    assert (c.head_dim, c.n_kv_groups, c.q_dim, c.kv_dim) == (16, 2, 32, 16)
    assert [c.is_sliding(i) for i in range(6)] == [True] * 5 + [False]
    assert c.layer_rope_base(0) == 10000.0 and c.layer_rope_base(5) == 1e6
    assert c.layer_window(0) == 4 and c.layer_window(5) == 0
    assert c.rope_neox and c.qk_norm and c.post_norms and c.activation == "gelu_tanh"


def test_context_overflow_is_a_typed_error(tiny_model_path):
    path, _ = tiny_model_path("llama")
    model = Model.load(path, ctx_size=8, cache_type="f32")
    with pytest.raises(ContextLengthError, match="context of 8"):
        model.logits(list(range(9)))


def test_missing_file_is_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Model.load(tmp_path / "nope.gguf")


def test_unsupported_architecture(tmp_path):
    md = {k.replace("llama.", "mamba."): v for k, v in gguf_metadata("llama").items()}
    md[Keys.ARCHITECTURE] = "mamba"
    path = write_gguf(tmp_path / "m.gguf", md, gguf_tensors("llama", random_hf_state("llama")))
    with pytest.raises(UnsupportedError, match="mamba"):
        Model.load(path, cache_type="f32")


def test_missing_tensor_names_it(tmp_path):
    tensors = gguf_tensors("llama", random_hf_state("llama"))
    del tensors["blk.1.ffn_up.weight"]
    path = write_gguf(tmp_path / "m.gguf", gguf_metadata("llama"), tensors)
    with pytest.raises(ModelError, match="blk.1.ffn_up.weight"):
        Model.load(path, cache_type="f32")


@pytest.mark.parametrize("arch", ARCHS)
def test_stacked_qkv_and_gate_up_equal_separate_matrices(arch, tiny_model_path):
    from trueno.gguf import load
    from trueno.llm.config import Config
    from trueno.llm.weights import Weights

    path, _ = tiny_model_path(arch)
    fused = Model.load(path, cache_type="f32")
    assert fused.weights.layers[0].wqkv is not None
    assert fused.weights.layers[0].w_gate_up is not None
    gf = load(path)
    config = Config.from_gguf(gf)
    plain = Model(config, Weights.from_gguf(gf, config, fuse=False), gf, path)
    assert plain.weights.layers[0].wqkv is None
    np.testing.assert_allclose(fused.logits(TOKENS), plain.logits(TOKENS), rtol=1e-5, atol=1e-5)
    plain.reset()
    fused.reset()
    plain.prefill(TOKENS[:4])
    fused.prefill(TOKENS[:4])
    np.testing.assert_allclose(fused.decode(9), plain.decode(9), rtol=1e-5, atol=1e-5)


def test_linear_rope_scaling_matches_hf(tmp_path):
    """llama with ``rope.scaling.type = linear``: positions are divided by the factor."""
    sd = random_hf_state("llama", seed=3)
    md = {**gguf_metadata("llama"), Keys.arch(Keys.ROPE_SCALING_TYPE, "llama"): "linear",
          Keys.arch(Keys.ROPE_SCALING_FACTOR, "llama"): 4.0}  # fmt: skip
    path = write_gguf(tmp_path / "scaled.gguf", md, gguf_tensors("llama", sd))
    model = Model.load(path, cache_type="f32")
    assert model.config.rope_scale == 0.25
    ours = model.logits(TOKENS)
    torch, hf = _hf_model("llama", sd, rope_scaling={"rope_type": "linear", "factor": 4.0})
    with torch.no_grad():
        ref = hf(torch.tensor([TOKENS])).logits[0].numpy()
    assert_logits_close(ours, ref)
    # and the scaling matters: the unscaled model differs
    plain = Model.load(write_gguf(tmp_path / "plain.gguf", gguf_metadata("llama"),
                                  gguf_tensors("llama", sd)))  # fmt: skip
    assert np.abs(plain.logits(TOKENS) - ours).max() > 1e-3


def llama3_rope_factors(head_dim, base, factor, low, high, old_ctx):
    """``rope_freqs.weight`` as llama.cpp's converter computes it for Llama 3.1 scaling."""
    freqs = 1.0 / base ** (np.arange(0, head_dim, 2) / head_dim)
    out = []
    for freq in freqs:
        wavelen = 2 * np.pi / freq
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def test_llama3_rope_frequency_factors_match_hf(tmp_path):
    p = TINY["llama"]
    sd = random_hf_state("llama", seed=4)
    tensors = gguf_tensors("llama", sd)
    factors = llama3_rope_factors(p["head_dim"], p["rope_base"], 8.0, 1.0, 4.0, 1024)
    assert 1.0 < factors[2] < 8.0  # one frequency in the smoothed band
    tensors["rope_freqs.weight"] = factors
    path = write_gguf(tmp_path / "llama3.gguf", gguf_metadata("llama"), tensors)
    tokens = (TOKENS * 4)[:40]
    ours = Model.load(path, cache_type="f32").logits(tokens)
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 1024}  # fmt: skip
    torch, hf = _hf_model("llama", sd, rope_scaling=rope)
    with torch.no_grad():
        ref = hf(torch.tensor([tokens])).logits[0].numpy()
    assert_logits_close(ours, ref)
    plain = write_gguf(tmp_path / "plain.gguf", gguf_metadata("llama"), gguf_tensors("llama", sd))
    assert np.abs(Model.load(plain, cache_type="f32").logits(tokens) - ours).max() > 1e-3


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_half_precision_weights_match_the_reference(dtype, tmp_path):
    """F16 / BF16 matrices and embedding (norms stay F32, as converters write them)."""
    from trueno.gguf.constants import GGMLType

    tensors = gguf_tensors("qwen2", random_hf_state("qwen2", seed=5))
    for name, t in list(tensors.items()):
        if t.ndim == 2:
            if dtype == "f16":
                tensors[name] = t.astype(np.float16)
            else:
                bits = (t.view(np.uint32) + 0x8000) >> 16  # round to bfloat16
                tensors[name] = (bits.astype(np.uint16), GGMLType.BF16, t.shape)
    md = gguf_metadata("qwen2")
    path = write_gguf(tmp_path / f"{dtype}.gguf", md, tensors)
    model = Model.load(path, cache_type="f32")
    assert model.weights.layers[0].w_down.ggml_type.name == dtype.upper()
    assert_logits_close(model.logits(TOKENS), reference_logits(path, TOKENS), rel=1e-3)
    full = model.logits(TOKENS)
    model.reset()
    model.prefill(TOKENS[:5])
    np.testing.assert_allclose(model.decode(TOKENS[5]), full[5], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q5_1"])
def test_quantized_weights_match_the_reference(qtype, tmp_path, monkeypatch):
    """Block-quantized matrices: decode's fused int8-activation matvecs, prefill's int8
    matmul (int8mm, 16+ tokens) and its dequantize + BLAS path all track the float64 forward
    over the same blocks."""
    from trueno.gguf.constants import GGMLType
    from trueno.quant import quantize, simd

    t = GGMLType[qtype]
    tensors = gguf_tensors("llama", random_hf_state("llama", seed=6))
    for name, w in list(tensors.items()):
        if w.ndim == 2 and w.shape[1] % 32 == 0:  # ffn_down (48 columns) stays F32
            tensors[name] = (quantize(w, t), t, w.shape)
    path = write_gguf(tmp_path / f"{qtype}.gguf", gguf_metadata("llama"), tensors)
    model = Model.load(path, cache_type="f32")
    tokens = (TOKENS * 2)[:16]  # more than MATVEC_ROWS: the batched path
    ref = reference_logits(path, tokens)
    if simd.available():
        from trueno.quant import int8mm

        monkeypatch.setitem(int8mm.TOKEN_RANGE, qtype, (16, 16))
        monkeypatch.setattr(int8mm, "MIN_WEIGHT_ELEMS", 0)  # the tiny model's matrices too
        assert_logits_close(model.logits(tokens), ref, rel=3e-2)  # int8 activations
        model.reset()
        monkeypatch.setattr(int8mm, "ENABLED", False)
    assert_logits_close(model.logits(tokens), ref, rel=1e-4)  # dequantized f32 weights
    model.reset()
    model.prefill(tokens[:3])  # short: fused matvecs with int8 activations
    steps = [model.decode(tok).copy() for tok in tokens[3:]]
    assert_logits_close(np.array(steps), ref[3:], rel=3e-2)  # int8 activations


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("cache_type", "dtype", "rel"), [("f16", np.uint16, 1e-2),
                                                          ("bf16", np.int16, 3e-2)])  # fmt: skip
def test_16_bit_kv_cache_logits_stay_close_to_f32(arch, cache_type, dtype, rel, tiny_model_path):
    """A 16-bit cache rounds each key and value once (f16: llama.cpp's default; bf16, with 3
    fewer mantissa bits, also rounds prefill attention's queries and weights for its bf16
    products where the host has them): prefill and decode logits within a bound of the exact
    f32 cache's, like the int8-activation bounds."""
    path, _ = tiny_model_path(arch)
    exact = Model.load(path, cache_type="f32")
    narrow = Model.load(path, cache_type=cache_type)
    assert narrow.state.cache.k.dtype == dtype and narrow.state.cache.itemsize == 2
    assert narrow.state.cache.nbytes * 2 == exact.state.cache.nbytes
    assert_logits_close(narrow.logits(TOKENS), exact.logits(TOKENS), rel=rel)
    steps = {}
    for name, model in (("f32", exact), (cache_type, narrow)):
        model.reset()
        out = [model.prefill(TOKENS[:3])]
        out += [model.decode(t).copy() for t in TOKENS[3:]]
        steps[name] = np.array(out)
    assert_logits_close(steps[cache_type], steps["f32"], rel=rel)
    assert np.abs(steps[cache_type] - steps["f32"]).max() > 0  # it really is a different cache


def test_cache_type_is_checked(tiny_model_path):
    from trueno.errors import ConfigError
    from trueno.llm.model import default_cache_type

    path, _ = tiny_model_path("llama")
    with pytest.raises(ConfigError, match="KV cache type 'q8_0'"):
        Model.load(path, cache_type="q8_0")
    assert default_cache_type("cpu") == "f16"  # measured: faster at depth (BENCHMARKS.md)
    assert Model.load(path).state.cache.cache_type == "f16"


def test_run_state_builds_each_layers_record(tiny_model_path):
    """Decode's per-layer arguments are one LayerState per layer that RunState builds (over
    its own cache): the model adds nothing to its RunState."""
    from trueno.llm.kv_cache import RunState

    path, _ = tiny_model_path("gemma3")  # sliding windows, q/k norms, post norms
    model = Model.load(path)
    s, c = model.state, model.config
    fresh = RunState(c, model.ctx, model.rope_factors, model.rt, s.cache.cache_type, model.weights)
    assert vars(s).keys() == vars(fresh).keys()
    assert len(s.layers) == c.n_layers
    for i, (layer, lw) in enumerate(zip(s.layers, model.weights.layers, strict=True)):
        assert np.shares_memory(layer.key_cache, s.cache.k[i])
        assert np.shares_memory(layer.value_cache, s.cache.v[i])
        assert (layer.cos, layer.sin) == s.rope[i] and layer.window == c.layer_window(i)
        assert layer.q_norm is lw.q_norm and layer.post_ffn_norm is lw.post_ffn_norm


@pytest.mark.parametrize("cache_type", ["f16", "f32"])
def test_decode_attention_span_reports_the_kv_bytes_it_read(cache_type, tiny_model_path,
                                                            tmp_path, capsys):  # fmt: skip
    """Each layer's decode attention span carries the KV cache bytes that step read: keys and
    values of the positions it attends to (a sliding-window layer: its window only), at the
    cache's element size; ``trueno trace summary`` turns them into the op's GB/s."""
    import json

    from trueno import trace
    from trueno.cli.main import main

    path, _ = tiny_model_path("gemma3")  # window 4 on five of its six layers
    model = Model.load(path, cache_type=cache_type)
    c = model.config
    model.prefill(TOKENS[:9])
    model.decode(TOKENS[9])  # compiled before the capture
    with trace.capture() as cap:
        model.decode(TOKENS[10])  # position 10: 11 keys, or the window's 4
    spans = [s for s in cap.spans if s["name"] == "attention"]
    assert len(spans) == c.n_layers
    row = 2 * c.n_kv_heads * c.head_dim * (2 if cache_type == "f16" else 4)  # one position's
    for layer, s in enumerate(spans):
        window = c.layer_window(layer)
        keys = min(11, window) if window > 0 else 11
        assert s["shape"] == [1, c.n_heads, keys, c.head_dim]
        assert s["bytes"] == keys * row
    assert {c.layer_window(i) for i in range(c.n_layers)} == {0, 4}  # both kinds were seen
    cap.to_json(tmp_path / "t.json")
    assert main(["trace", "summary", str(tmp_path / "t.json"), "--json"]) == 0
    ops = {r["name"]: r for r in json.loads(capsys.readouterr().out)["ops"]}
    att = ops["attention"]
    assert att["bytes"] == sum(s["bytes"] for s in spans) and att["gbps"] > 0


@pytest.mark.parametrize("cache_type", ["f16", "f32"])
def test_sliding_window_decode_never_reads_keys_outside_its_window(cache_type, tiny_model_path):
    """Model.decode and the batch engine's step, on their real path: with every cached key
    and value a window layer's query no longer sees turned to NaN, the logits are the same
    (a kernel that read them into its softmax would give NaN)."""
    from trueno.llm.batch import BatchEngine, BatchSequence
    from trueno.llm.sampler import Sampler

    path, _ = tiny_model_path("gemma3")  # window 4 on five of its six layers
    model = Model.load(path, cache_type=cache_type)
    c = model.config
    sliding = [i for i in range(c.n_layers) if c.layer_window(i) > 0]
    nan = np.float16(np.nan).view(np.uint16) if cache_type == "f16" else np.float32(np.nan)

    def poison(cache, pos):  # positions before the window of a query at pos
        for i in sliding:
            stale = pos - c.layer_window(i) + 1
            cache.k[i, :, :stale] = nan
            cache.v[i, :, :stale] = nan

    model.prefill(TOKENS[:9])
    clean = model.decode(TOKENS[9]).copy()
    model.truncate(9)
    poison(model.state.cache, 9)
    poisoned = model.decode(TOKENS[9])
    assert np.isfinite(poisoned).all()
    np.testing.assert_array_equal(poisoned, clean)

    # two sequences: a step of one alone runs Model.decode's path, checked above
    engine = BatchEngine(model, n_slots=2)
    prompts = [TOKENS[:9], TOKENS[1:10]]
    seqs = [engine.add(BatchSequence(p, 2, Sampler(temperature=0.0), stop_at_eog=False))
            for p in prompts]  # fmt: skip
    engine.step()  # both prompts prefilled, their first tokens sampled (not yet run)
    for seq in seqs:
        poison(engine.slots[seq.slot].cache, 9)
    engine.step()  # the batched decode of both at position 9
    assert np.isfinite(engine.logits[:2]).all()
    for row, (prompt, seq) in enumerate(zip(prompts, seqs, strict=True)):
        model.reset()
        model.prefill(prompt)
        np.testing.assert_array_equal(engine.logits[row], model.decode(seq.tokens[0]))
