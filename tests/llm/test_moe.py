"""Mixture-of-experts models (mixtral = llama with expert tensors, qwen3moe) against
transformers' MixtralForCausalLM / Qwen3MoeForCausalLM, tiny and random, made here
(tests/llm/llm_moe.py)."""

from __future__ import annotations

import numpy as np
import pytest
from llm_models import (
    assert_batched_logprobs_equal_alone,
    assert_logits_close,
    permute_qk,
    run_batch,
    write_gguf,
)
from llm_moe import (
    TINY_MOE,
    TOKENS,
    hf_logits_and_routes,
    hf_state_from_gguf,
    moe_gguf_tensors,
    moe_metadata,
    quantized,
    random_moe_state,
    unpermute_qk,
)

from trueno.errors import ModelError, UnsupportedError
from trueno.gguf.constants import ExpertGatingFunc, GGMLType, Keys
from trueno.llm import Model
from trueno.llm.moe import route


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


NAMES = list(TINY_MOE)
# weights whose routers have no near tie on TOKENS (checked in the test)
QUANT_SEED = {"mixtral": 5, "qwen3moe": 18}


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


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
@pytest.mark.parametrize("name", ["mixtral", "qwen3moe"])
def test_quantized_experts_stay_3d_blocks_in_place_within_int8_bounds(
    name, qtype, moe_model_path, monkeypatch
):
    """Experts as 3-D quantized tensors: used in place over the file (no copy), and logits
    within the int8-activation bound of transformers run on the same dequantized weights;
    an expert that many rows chose (dequantize + BLAS) within the f32 bound."""
    path, sd = moe_model_path(name, qtype, seed=QUANT_SEED[name])
    model = Model.load(path, cache_type="f32")
    gf = model._gguf
    data = gf.tensors["blk.1.ffn_up_exps.weight"].data
    assert data.ndim == 3 and gf.tensors["blk.1.ffn_up_exps.weight"].ggml_type == GGMLType[qtype]
    up = model.weights.layers[1].moe.up
    assert all(m.ggml_type == GGMLType[qtype] for m in up)
    assert all(np.shares_memory(m.prepared.blocks, data[e]) for e, m in enumerate(up))
    hf_sd = hf_state_from_gguf(name, path, sd)  # the very blocks in the file, dequantized
    router_logits: list = []
    ref, hf_routes = hf_logits_and_routes(name, hf_sd, TOKENS, router_logits)
    # the premise: no near tie at the k-th expert, so int8 activations cannot flip a choice
    # (a flip is a different model, not a rounding error); QUANT_SEED is drawn so
    k = TINY_MOE[name]["used"]
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
    # an expert that many rows chose is dequantized once for them all (+ BLAS, f32
    # activations): with the crossover (quant.prepared.MATVEC_ROWS, which moe and weights
    # import) at 0 everywhere, 48 tokens (each chosen expert >= 3 rows) take that path in
    # every expert
    for module in ("trueno.llm.moe", "trueno.llm.weights", "trueno.quant.prepared"):
        monkeypatch.setattr(f"{module}.MATVEC_ROWS", 0)
    long = TOKENS * 3
    ref_long, _ = hf_logits_and_routes(name, hf_sd, long)
    got = model.logits(long)
    for lw in model.weights.layers:
        counts = np.bincount(lw.moe.last_experts.ravel())
        assert counts[counts > 0].min() >= 3
    assert_logits_close(got, ref_long, rel=1e-4)


@pytest.mark.parametrize("qtype", [None, "Q8_0"])
@pytest.mark.parametrize("name", ["mixtral", "qwen3moe"])
def test_batch_engine_runs_moe_as_alone(name, qtype, moe_model_path):
    """The batched decode groups its rows by expert (multi-vector kernels for Q8_0) and still
    gives every sequence exactly the tokens, logprobs and top logprobs it gets alone."""
    from trueno.llm.batch import BatchEngine, BatchSequence
    from trueno.llm.generate import generate_tokens
    from trueno.llm.sampler import Sampler

    path, _ = moe_model_path(name, qtype)
    model = Model.load(path)
    prompts = [[1, 5, 9, 13], [1, 30, 31, 32, 33, 34, 35], [1, 7], [1, 40, 41, 42, 43, 44]]
    expect = []
    for p in prompts:
        model.reset()
        expect.append(list(generate_tokens(model, p, max_tokens=10, temperature=0.0,
                                           stop_at_eog=False)))  # fmt: skip
    engine = BatchEngine(model, n_slots=4)
    seqs = [BatchSequence(p, 10, Sampler(temperature=0.0), stop_at_eog=False, logprobs=3)
            for p in prompts]  # fmt: skip
    events = run_batch(engine, seqs)
    assert [s.tokens for s in seqs] == expect
    assert len({tuple(t) for t in expect}) > 1  # the sequences really differ
    assert_batched_logprobs_equal_alone(model, seqs, events)


# not qwen3moe-unnormed: the converter writes no expert_weights_norm for qwen3moe (llama.cpp
# renormalizes qwen3moe's top-k weights unconditionally), so norm_topk_prob=False is lost
CONVERTED = ("mixtral", "qwen3moe")


@pytest.fixture(scope="module")
def llama_cpp_moe(tmp_path_factory):
    """{name: (path, HF state)} of the MoE models written by llama.cpp's convert_hf_to_gguf.py
    (its expert split, 3-D tensors, Q/K permutation and metadata keys, not ours)."""
    from llm_archs import llama_cpp_converted
    from llm_moe import hf_moe_model

    states = {name: random_moe_state(name) for name in CONVERTED}
    models = {name: hf_moe_model(name, sd)[1] for name, sd in states.items()}
    paths = llama_cpp_converted(models, tmp_path_factory.mktemp("llama_cpp_moe"))
    return {name: (paths[name], states[name]) for name in CONVERTED}


@pytest.mark.slow  # one converter process for both: make test-arch
@pytest.mark.parametrize("name", CONVERTED)
def test_llama_cpp_converted_moe_matches_transformers(name, llama_cpp_moe):
    path, sd = llama_cpp_moe[name]
    model = Model.load(path, cache_type="f32")
    c, p = model.config, TINY_MOE[name]
    assert (c.arch, c.n_experts, c.n_experts_used) == (p["arch"], p["experts"], p["used"])
    assert c.expert_weights_norm == p["norm_topk"]
    ref, hf_routes = hf_logits_and_routes(name, sd, TOKENS)
    assert_logits_close(model.logits(TOKENS), ref, rel=1e-4)
    for lw, hf_idx in zip(model.weights.layers, hf_routes, strict=True):
        np.testing.assert_array_equal(np.sort(lw.moe.last_experts, 1), np.sort(hf_idx, 1))


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
