"""Mixture-of-experts models (mixtral = llama with expert tensors, qwen3moe) against
transformers' MixtralForCausalLM / Qwen3MoeForCausalLM, tiny and random, made here.

Experts are written as llama.cpp's converter writes them: 3-D tensors ffn_{gate,up}_exps
(E, F, D) and ffn_down_exps (E, D, F) (numpy order) split from HF's fused gate_up_proj, the
router as ffn_gate_inp (E, D); mixtral's Q/K rows permuted as llama's."""

from __future__ import annotations

import numpy as np
import pytest
from llm_models import (
    TINY,
    gguf_tensors,
    permute_qk,
    random_hf_state,
    spm_vocab_metadata,
    write_gguf,
)
from test_model import assert_logits_close

from trueno.errors import ModelError, UnsupportedError
from trueno.gguf.constants import ExpertGatingFunc, GGMLType, Keys
from trueno.llm import Model
from trueno.llm.moe import route

TINY_MOE = {
    "mixtral": dict(arch="llama", layers=2, experts=4, used=2, expert_hidden=64, hidden=64,
                    rope_base=1e6, eps=1e-5, norm_topk=True),
    "qwen3moe": dict(arch="qwen3moe", layers=2, experts=8, used=2, expert_hidden=64, hidden=96,
                     rope_base=1e6, eps=1e-6, norm_topk=True),
    # Qwen3-MoE with norm_topk_prob=False: GGUF says so with expert_weights_norm = false
    "qwen3moe-unnormed": dict(arch="qwen3moe", layers=2, experts=8, used=3, expert_hidden=64,
                              hidden=96, rope_base=1e6, eps=1e-6, norm_topk=False),
}  # fmt: skip
LLAMA = TINY["llama"]  # attention sizes shared with the tiny dense llama
VOCAB, DIM, HEADS, KV_HEADS, HEAD_DIM = (LLAMA[k] for k in ("vocab", "dim", "heads", "kv_heads",
                                                             "head_dim"))  # fmt: skip
assert all(p["layers"] == LLAMA["layers"] for p in TINY_MOE.values())
TOKENS = [1, 5, 17, 3, 42, 8, 63, 0, 12, 12, 30, 7, 22, 9, 50, 4]  # > MATVEC_ROWS


def random_moe_state(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """HF-named float32 weights: the tiny llama's attention, norms and head (same sizes),
    with the dense MLP replaced by a router and experts (transformers 5's layout: 3-D
    gate_up_proj (E, 2F, D) and down_proj (E, D, F)), plus qwen3's per-head q/k norms."""
    p = TINY_MOE[name]
    rng = np.random.default_rng(seed + 100)
    E, F, D = p["experts"], p["expert_hidden"], DIM
    sd = {k: v for k, v in random_hf_state("llama", seed).items() if ".mlp." not in k}

    def mat(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    for i in range(p["layers"]):
        pre = f"model.layers.{i}."
        if p["arch"] == "qwen3moe":
            for n in ("q", "k"):
                sd[pre + f"self_attn.{n}_norm.weight"] = (
                    1.0 + 0.2 * rng.standard_normal(HEAD_DIM)
                ).astype(np.float32)
        sd[pre + "mlp.gate.weight"] = 6 * mat(E, D)  # router logits of order 6: few near ties
        sd[pre + "mlp.experts.gate_up_proj"] = mat(E, 2 * F, D)
        sd[pre + "mlp.experts.down_proj"] = mat(E, D, F)
    return sd


def moe_gguf_tensors(name: str, sd: dict) -> dict[str, np.ndarray]:
    """GGUF tensors as llama.cpp's converter writes them: the dense part as the llama's
    (mixtral: Q/K rows permuted) or unpermuted (qwen3moe: NeoX RoPE, as qwen2's); the fused
    gate_up_proj split into ffn_gate_exps and ffn_up_exps."""
    p = TINY_MOE[name]
    F = p["expert_hidden"]
    dense = {k: v for k, v in sd.items() if ".mlp." not in k}
    out = gguf_tensors("llama" if p["arch"] == "llama" else "qwen2", dense)
    for i in range(p["layers"]):
        pre, blk = f"model.layers.{i}.mlp.", f"blk.{i}."
        gate_up = sd[pre + "experts.gate_up_proj"]
        out[blk + "ffn_gate_inp.weight"] = sd[pre + "gate.weight"]
        out[blk + "ffn_gate_exps.weight"] = np.ascontiguousarray(gate_up[:, :F])
        out[blk + "ffn_up_exps.weight"] = np.ascontiguousarray(gate_up[:, F:])
        out[blk + "ffn_down_exps.weight"] = sd[pre + "experts.down_proj"]
    return out


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of :func:`permute_qk` (GGUF adjacent pairs -> HF NeoX halves)."""
    return (
        w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def moe_metadata(name: str) -> dict:
    p = TINY_MOE[name]
    arch = p["arch"]

    def k(key):
        return Keys.arch(key, arch)

    md = {
        Keys.ARCHITECTURE: arch,
        k(Keys.CONTEXT_LENGTH): 128,
        k(Keys.EMBEDDING_LENGTH): DIM,
        k(Keys.BLOCK_COUNT): p["layers"],
        k(Keys.FEED_FORWARD_LENGTH): p["hidden"] if arch == "qwen3moe" else p["expert_hidden"],
        k(Keys.HEAD_COUNT): HEADS,
        k(Keys.HEAD_COUNT_KV): KV_HEADS,
        k(Keys.LAYERNORM_RMS_EPS): float(p["eps"]),
        k(Keys.ROPE_FREQ_BASE): float(p["rope_base"]),
        k(Keys.EXPERT_COUNT): p["experts"],
        k(Keys.EXPERT_USED_COUNT): p["used"],
        **spm_vocab_metadata(),
    }
    if arch == "qwen3moe":
        md[k(Keys.KEY_LENGTH)] = HEAD_DIM
        md[k(Keys.VALUE_LENGTH)] = HEAD_DIM
        md[k(Keys.EXPERT_FEED_FORWARD_LENGTH)] = p["expert_hidden"]
    if not p["norm_topk"]:
        md[k(Keys.EXPERT_WEIGHTS_NORM)] = False
    return md


def quantized(tensors: dict, qtype: str) -> dict:
    """Every expert tensor as 3-D blocks of ``qtype``; the router stays F32 (as llama.cpp's
    quantizer keeps it) and so does the rest (quantized dense matrices: test_model.py)."""
    from trueno.quant import quantize

    t = GGMLType[qtype]
    out = dict(tensors)
    for name, w in tensors.items():
        if "_exps." in name:
            out[name] = (quantize(w, t), t, w.shape)
    return out


@pytest.fixture(scope="module")
def moe_model_path(tmp_path_factory):
    cache: dict = {}

    def make(name: str, qtype: str | None = None, seed: int = 0):
        if (name, qtype, seed) not in cache:
            sd = random_moe_state(name, seed)
            tensors = moe_gguf_tensors(name, sd)
            if qtype is not None:
                tensors = quantized(tensors, qtype)
            path = tmp_path_factory.mktemp(f"moe_{name}") / f"{name}-{qtype or 'F32'}-{seed}.gguf"
            cache[name, qtype, seed] = (write_gguf(path, moe_metadata(name), tensors), sd)
        return cache[name, qtype, seed]

    return make


def hf_moe_model(name: str, sd: dict):
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0)")
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    p = TINY_MOE[name]
    cls_name = "MixtralForCausalLM" if p["arch"] == "llama" else "Qwen3MoeForCausalLM"
    if not hasattr(transformers, cls_name):
        pytest.skip(f"transformers {transformers.__version__} has no {cls_name}")
    gate_up = next(k for k in sd if k.endswith("experts.gate_up_proj"))
    common = dict(
        vocab_size=VOCAB,
        hidden_size=DIM,
        num_hidden_layers=p["layers"],
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        rms_norm_eps=p["eps"],
        max_position_embeddings=128,
        tie_word_embeddings=False,
        rope_theta=p["rope_base"],
        num_experts_per_tok=p["used"],
        attn_implementation="eager",
    )
    if p["arch"] == "llama":
        cfg = transformers.MixtralConfig(
            intermediate_size=p["expert_hidden"], num_local_experts=p["experts"], **common
        )
    else:
        cfg = transformers.Qwen3MoeConfig(
            intermediate_size=p["hidden"],
            moe_intermediate_size=p["expert_hidden"],
            num_experts=p["experts"],
            norm_topk_prob=p["norm_topk"],
            decoder_sparse_step=1,
            mlp_only_layers=[],
            **common,
        )
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(cfg).eval()
    if tuple(model.state_dict()[gate_up].shape) != sd[gate_up].shape:
        pytest.skip(f"transformers {transformers.__version__} lays experts out differently")
    state = {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}  # writable copies
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return torch, model


def hf_logits_and_routes(name: str, sd: dict, tokens, router_logits: list | None = None):
    """transformers' logits (T, V) and, per layer, its router's top-k expert ids (T, k);
    its router logits (T, E) per layer are appended to ``router_logits`` when given."""
    torch, hf = hf_moe_model(name, sd)
    routes = {}

    def hook(layer):
        def save(module, args, output):
            routes[layer] = output  # (router_logits, scores, indices)

        return save

    for i, layer in enumerate(hf.model.layers):
        layer.mlp.gate.register_forward_hook(hook(i))
    with torch.no_grad():
        logits = hf(torch.tensor([tokens])).logits[0].numpy()
    layers = range(len(hf.model.layers))
    if router_logits is not None:
        router_logits.extend(routes[i][0].numpy() for i in layers)
    return logits, [routes[i][2].numpy() for i in layers]


NAMES = list(TINY_MOE)
QUANT_SEED = 5  # weights whose routers have no near tie on TOKENS (checked in the test)


@pytest.mark.parametrize("name", NAMES)
def test_logits_and_expert_choice_match_transformers(name, moe_model_path):
    path, sd = moe_model_path(name)
    model = Model.load(path, cache_type="f32")
    c = model.config
    p = TINY_MOE[name]
    assert (c.n_experts, c.n_experts_used, c.expert_hidden_dim) == (
        p["experts"], p["used"], p["expert_hidden"])  # fmt: skip
    assert c.expert_weights_norm == p["norm_topk"] and c.qk_norm == (p["arch"] == "qwen3moe")
    ref, hf_routes = hf_logits_and_routes(name, sd, TOKENS)
    assert_logits_close(model.logits(TOKENS), ref, rel=1e-4)
    for lw, hf_idx in zip(model.weights.layers, hf_routes, strict=True):
        ours = lw.moe.last_experts
        assert ours.shape == (len(TOKENS), p["used"])
        np.testing.assert_array_equal(np.sort(ours, axis=1), np.sort(hf_idx, axis=1))
        assert len(np.unique(ours)) > p["used"]  # tokens really go to different experts


@pytest.mark.parametrize("name", NAMES)
def test_decode_with_kv_cache_equals_full_sequence(name, moe_model_path):
    path, sd = moe_model_path(name)
    model = Model.load(path, cache_type="f32")
    full = model.logits(TOKENS)
    full_routes = [lw.moe.last_experts.copy() for lw in model.weights.layers]
    model.reset()
    steps = [model.prefill(TOKENS[:3])]
    for t, tok in enumerate(TOKENS[3:], start=3):
        steps.append(model.decode(tok).copy())
        for lw, routes in zip(model.weights.layers, full_routes, strict=True):
            assert lw.moe.last_experts.shape == (1, model.config.n_experts_used)
            np.testing.assert_array_equal(lw.moe.last_experts[0], routes[t])
    np.testing.assert_allclose(np.array(steps), full[2:], rtol=1e-4, atol=1e-4)


def test_chunked_prefill_equals_one_batch(moe_model_path, monkeypatch):
    path, _ = moe_model_path("qwen3moe")
    model = Model.load(path, cache_type="f32")
    full = model.logits(TOKENS)
    monkeypatch.setattr("trueno.llm.model.PREFILL_CHUNK", 5)
    np.testing.assert_allclose(model.logits(TOKENS), full, rtol=1e-5, atol=1e-5)


class _Counting:
    """Stands in for an expert Matrix and counts the calls that read its weights."""

    def __init__(self, m, log, key) -> None:
        self.m, self.log, self.key = m, log, key
        self.shape, self.rows = m.shape, m.rows

    def __getattr__(self, attr):
        fn = getattr(self.m, attr)

        def call(*args, **kwargs):
            self.log.append(self.key)
            return fn(*args, **kwargs)

        return call if attr in ("matvec_into", "matvecs_into", "matmul") else fn


def test_decode_reads_only_the_chosen_experts_and_prefill_each_once(moe_model_path):
    path, _ = moe_model_path("qwen3moe")
    model = Model.load(path, cache_type="f32")
    log: list = []
    for i, lw in enumerate(model.weights.layers):
        for kind in ("gate", "up", "down"):
            mats = getattr(lw.moe, kind)
            mats[:] = [_Counting(m, log, (i, kind, e)) for e, m in enumerate(mats)]
    model.prefill(TOKENS)  # one chunk: each chosen expert's three matrices called once
    for i, lw in enumerate(model.weights.layers):
        chosen = set(np.unique(lw.moe.last_experts).tolist())
        for kind in ("gate", "up", "down"):
            called = [e for (j, kd, e) in log if j == i and kd == kind]
            assert sorted(called) == sorted(chosen)  # once each, and no other expert
    log.clear()
    model.decode(TOKENS[0])
    for i, lw in enumerate(model.weights.layers):
        chosen = lw.moe.last_experts[0].tolist()
        assert [e for (j, kd, e) in log if j == i and kd == "down"] == chosen
        assert sorted(e for (j, _, e) in log if j == i) == sorted(chosen * 3)


def hf_state_from_gguf(path, sd: dict) -> dict:
    """The mixtral HF state of a GGUF file's tensors, dequantized by gguf-py."""
    import gguf as gguf_py

    reader = gguf_py.GGUFReader(str(path))
    deq = {}
    for t in reader.tensors:
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        deq[t.name] = np.asarray(gguf_py.quants.dequantize(np.asarray(t.data), t.tensor_type),
                                 dtype=np.float32).reshape(shape)  # fmt: skip
    hf_sd = dict(sd)
    for key in sd:
        if key.startswith("model.layers."):
            _, _, i, rest = key.split(".", 3)
            b = f"blk.{i}."
            if rest == "mlp.experts.gate_up_proj":
                hf_sd[key] = np.concatenate(
                    [deq[b + "ffn_gate_exps.weight"], deq[b + "ffn_up_exps.weight"]], axis=1
                )
            elif rest == "mlp.experts.down_proj":
                hf_sd[key] = deq[b + "ffn_down_exps.weight"]
            elif rest in ("self_attn.q_proj.weight", "self_attn.k_proj.weight"):
                n = HEADS if rest.startswith("self_attn.q") else KV_HEADS
                name = b + ("attn_q.weight" if n == HEADS else "attn_k.weight")
                hf_sd[key] = unpermute_qk(deq[name], n)
            elif rest == "self_attn.v_proj.weight":
                hf_sd[key] = deq[b + "attn_v.weight"]
            elif rest == "self_attn.o_proj.weight":
                hf_sd[key] = deq[b + "attn_output.weight"]
    hf_sd["lm_head.weight"] = deq["output.weight"]
    return hf_sd


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_quantized_experts_stay_3d_blocks_in_place_within_int8_bounds(qtype, moe_model_path):
    """Experts as 3-D quantized tensors: used in place over the file (no copy), and logits
    within the int8-activation bound of transformers run on the same dequantized weights."""
    path, sd = moe_model_path("mixtral", qtype, seed=QUANT_SEED)
    model = Model.load(path, cache_type="f32")
    gf = model._gguf
    data = gf.tensors["blk.1.ffn_up_exps.weight"].data
    assert data.ndim == 3 and gf.tensors["blk.1.ffn_up_exps.weight"].ggml_type == GGMLType[qtype]
    up = model.weights.layers[1].moe.up
    assert all(m.ggml_type == GGMLType[qtype] for m in up)
    assert all(np.shares_memory(m.prepared.blocks, data[e]) for e, m in enumerate(up))
    hf_sd = hf_state_from_gguf(path, sd)  # the very blocks in the file, dequantized
    router_logits: list = []
    ref, hf_routes = hf_logits_and_routes("mixtral", hf_sd, TOKENS, router_logits)
    # the premise: no near tie at the k-th expert, so int8 activations cannot flip a choice
    # (a flip is a different model, not a rounding error); QUANT_SEED is drawn so
    k = TINY_MOE["mixtral"]["used"]
    top = [np.sort(z, axis=1)[:, ::-1] for z in router_logits]
    assert min(float(np.min(z[:, k - 1] - z[:, k])) for z in top) > 0.1  # int8: ~0.02
    np.testing.assert_array_equal(unpermute_qk(permute_qk(sd["lm_head.weight"], 4), 4),
                                  sd["lm_head.weight"])  # fmt: skip
    assert_logits_close(model.logits(TOKENS), ref, rel=3e-2)  # int8 activations
    for lw, hf_idx in zip(model.weights.layers, hf_routes, strict=True):
        np.testing.assert_array_equal(np.sort(lw.moe.last_experts, 1), np.sort(hf_idx, 1))
    model.reset()
    model.prefill(TOKENS[:3])
    steps = [model.decode(tok).copy() for tok in TOKENS[3:]]
    assert_logits_close(np.array(steps), ref[3:], rel=3e-2)


@pytest.mark.parametrize("qtype", [None, "Q8_0"])
def test_batch_engine_runs_moe_as_alone(qtype, moe_model_path):
    """The batched decode groups its rows by expert (multi-vector kernels for Q8_0) and still
    gives every sequence exactly the tokens it gets alone."""
    from trueno.llm.batch import BatchEngine, BatchSequence
    from trueno.llm.generate import generate_tokens
    from trueno.llm.sampler import Sampler

    path, _ = moe_model_path("qwen3moe", qtype)
    model = Model.load(path)
    prompts = [[1, 5, 9, 13], [1, 30, 31, 32, 33, 34, 35], [1, 7], [1, 40, 41, 42, 43, 44]]
    expect = []
    for p in prompts:
        model.reset()
        expect.append(list(generate_tokens(model, p, max_tokens=10, temperature=0.0,
                                           stop_at_eog=False)))  # fmt: skip
    engine = BatchEngine(model, n_slots=4)
    seqs = [BatchSequence(p, 10, Sampler(temperature=0.0), stop_at_eog=False) for p in prompts]
    assert engine.run(seqs) == expect
    assert len({tuple(t) for t in expect}) > 1  # the sequences really differ


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize(
    "gating, norm, scale",
    [
        (ExpertGatingFunc.SOFTMAX, True, 1.0),
        (ExpertGatingFunc.SOFTMAX, False, 2.5),
        (ExpertGatingFunc.SIGMOID, True, 1.0),
        (ExpertGatingFunc.SIGMOID, False, 0.0),  # 0: llama.cpp's "unset", no scaling
        (ExpertGatingFunc.SOFTMAX_WEIGHT, False, 1.0),
        (ExpertGatingFunc.SQRT_SOFTPLUS, True, 1.5),
    ],
)
def test_route_matches_the_formulas(gating, norm, scale):
    rng = np.random.default_rng(int(gating) * 10 + norm)
    logits = (2 * rng.standard_normal((7, 16))).astype(np.float32)
    k = 4
    idx, w = route(logits, k, gating, norm, scale)
    z = logits.astype(np.float64)
    expect_idx = np.array([sorted(range(16), key=lambda e: -z[t, e])[:k] for t in range(7)])
    np.testing.assert_array_equal(idx, expect_idx)
    chosen = np.take_along_axis(z, expect_idx, axis=1)
    if gating == ExpertGatingFunc.SOFTMAX:
        expect = np.take_along_axis(_softmax(z), expect_idx, axis=1)
    elif gating == ExpertGatingFunc.SIGMOID:
        expect = 1 / (1 + np.exp(-chosen))
    elif gating == ExpertGatingFunc.SOFTMAX_WEIGHT:
        expect = _softmax(chosen)
    else:
        expect = np.sqrt(np.log1p(np.exp(chosen)))
    if norm:
        expect = expect / expect.sum(axis=1, keepdims=True)
    if scale:
        expect = expect * scale
    assert w.dtype == np.float32
    np.testing.assert_allclose(w, expect, rtol=1e-6)


def test_gating_and_scale_come_from_the_metadata(tmp_path):
    name = "mixtral"
    md = moe_metadata(name)
    md[Keys.arch(Keys.EXPERT_GATING_FUNC, "llama")] = int(ExpertGatingFunc.SIGMOID)
    md[Keys.arch(Keys.EXPERT_WEIGHTS_SCALE, "llama")] = 2.0
    md[Keys.arch(Keys.EXPERT_WEIGHTS_NORM, "llama")] = False
    tensors = moe_gguf_tensors(name, random_moe_state(name))
    c = Model.load(write_gguf(tmp_path / "sig.gguf", md, tensors)).config
    assert c.expert_gating == ExpertGatingFunc.SIGMOID
    assert (c.expert_weights_scale, c.expert_weights_norm) == (2.0, False)
    md[Keys.arch(Keys.EXPERT_GATING_FUNC, "llama")] = 9
    with pytest.raises(UnsupportedError, match="expert_gating_func 9"):
        Model.load(write_gguf(tmp_path / "bad.gguf", md, tensors))


def test_bad_moe_files_are_model_errors(tmp_path):
    name = "qwen3moe"
    tensors = moe_gguf_tensors(name, random_moe_state(name))
    md = moe_metadata(name)
    missing = {k: v for k, v in tensors.items() if k != "blk.1.ffn_down_exps.weight"}
    with pytest.raises(ModelError, match="blk.1.ffn_down_exps.weight"):
        Model.load(write_gguf(tmp_path / "missing.gguf", md, missing))
    too_many = {**md, Keys.arch(Keys.EXPERT_USED_COUNT, "qwen3moe"): 9}
    with pytest.raises(ModelError, match="expert_used_count 9"):
        Model.load(write_gguf(tmp_path / "used.gguf", too_many, tensors))
    no_experts = {k: v for k, v in md.items() if k != Keys.arch(Keys.EXPERT_COUNT, "qwen3moe")}
    with pytest.raises(ModelError, match="expert_count"):
        Model.load(write_gguf(tmp_path / "none.gguf", no_experts, tensors))
    wrong = dict(tensors)
    wrong["blk.0.ffn_gate_exps.weight"] = tensors["blk.0.ffn_gate_exps.weight"][:, :32]
    with pytest.raises(ModelError, match="blk.0.ffn_gate_exps.weight.*expected shape"):
        Model.load(write_gguf(tmp_path / "shape.gguf", md, wrong))


def test_a_device_runtime_refuses_moe(moe_model_path):
    from dataclasses import replace

    from trueno.llm import runtime as runtimes
    from trueno.llm.config import Config

    path, _ = moe_model_path("mixtral")
    config = Model.load(path).config
    stand_in = replace(runtimes.get("cpu"), name="gpu", host_memory=False)
    with pytest.raises(UnsupportedError, match="mixture-of-experts"):
        stand_in.check(config)
    stand_in.check(Config(**{**config.__dict__, "n_experts": 0}))  # a dense model passes
