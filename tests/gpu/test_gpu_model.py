"""On a real GPU: the whole model on the device (``Model.load(..., device="gpu")``,
``trueno run --device gpu``) against the CPU model and the float64 reference (skips without
cupy and a device; test_gpu_glue_emulated.py runs these over an emulated cupy). The stand-in
runtime test in tests/llm/test_runtime.py checks the same orchestration with numpy."""

from __future__ import annotations

import numpy as np
import pytest

from trueno.llm import Model

pytestmark = pytest.mark.gpu
ARCHS = ("llama", "qwen2", "gemma3")
TOKENS = [1, 5, 17, 3, 42, 8, 63, 0, 12, 12, 30, 7]  # longer than gemma's window of 4


def relative_error(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def prefill_then_decode(model, n_prompt: int = 4) -> np.ndarray:
    steps = [model.prefill(TOKENS[:n_prompt])]
    steps += [model.decode(t).copy() for t in TOKENS[n_prompt:]]
    return np.array(steps)


@pytest.mark.parametrize("arch", ARCHS)
def test_gpu_model_matches_cpu_model(arch, model_file):
    path = model_file(arch)
    cpu = prefill_then_decode(Model.load(path, cache_type="f32"))
    gpu_model = Model.load(path, device="gpu")
    gpu = prefill_then_decode(gpu_model)
    assert gpu.dtype == np.float32 and type(gpu) is np.ndarray
    assert relative_error(gpu, cpu) <= 1e-4
    # a long prompt takes the batched path: logits of every position
    assert (
        relative_error(gpu_model.logits(TOKENS), Model.load(path, cache_type="f32").logits(TOKENS))
        <= 1e-4
    )


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"])
def test_gpu_quantized_model_matches_float64_reference(qtype, model_file):
    """The GPU kernels keep activations in f32 (the CPU decode quantizes them to int8), so
    GPU logits track the float64 forward over the same blocks closely."""
    from llm_reference import reference_logits

    path = model_file("llama", qtype)
    ref = reference_logits(path, TOKENS)
    model = Model.load(path, device="gpu")
    assert relative_error(model.logits(TOKENS), ref) <= 1e-4  # batched kernels
    model.reset()
    assert relative_error(prefill_then_decode(model), ref[3:]) <= 1e-4  # matvec kernels


@pytest.mark.parametrize("arch", ["gemma3", "gemma2"])
def test_gpu_decode_at_depth_matches_cpu(arch, model_file, tmp_path):
    """A 1,024-token context: decode attention cut into slices of positions per KV head and
    merged (attend_merge_f32), sliding-window layers, and gemma2's score softcap; graphed."""
    from trueno.llm.gpu_kernels import attention_splits

    if arch == "gemma2":  # softcap on the attention scores (needs transformers)
        from llm_archs import hf_model, to_gguf
        from llm_models import write_gguf

        md, tensors, _ = to_gguf(arch, hf_model(arch)[1])
        path = write_gguf(tmp_path / "gemma2.gguf", md, tensors)
    else:
        path = model_file(arch)
    cpu = Model.load(path, ctx_size=1024, cache_type="f32")
    gpu = Model.load(path, ctx_size=1024, device="gpu")
    assert attention_splits(gpu.ctx, gpu.config.head_dim) > 1
    assert gpu.config.layer_window(0) > 0 and (arch == "gemma3" or gpu.config.attn_softcap > 0)
    prompt = (TOKENS * 20)[:200]
    steps = {}
    for name, model in (("cpu", cpu), ("gpu", gpu)):
        out = [model.prefill(prompt)]
        out += [model.decode(t).copy() for t in TOKENS[:6]]
        steps[name] = np.array(out)
    assert relative_error(steps["gpu"], steps["cpu"]) <= 1e-4


def test_weights_and_cache_live_on_the_device(model_file):
    import cupy as cp

    from trueno.gguf.constants import GGMLType
    from trueno.quant.gpu import GpuDenseMatrix, GpuQuantMatrix

    model = Model.load(model_file("qwen2", "Q4_1"), device="gpu")
    lw = model.weights.layers[0]
    assert isinstance(lw.wqkv, GpuQuantMatrix) and lw.wqkv.ggml_type == GGMLType.Q4_1
    assert isinstance(lw.w_down, GpuDenseMatrix)  # 48 columns: stays F32 in this file
    assert isinstance(model.weights.output, GpuQuantMatrix)  # the tied head, quantized
    for a in (lw.attn_norm, lw.bqkv, model.state.cache.k, model.state.x, model.state.logits):
        assert isinstance(a, cp.ndarray)


def test_gpu_decode_is_traced_as_cupy_ops_and_copies(model_file):
    from trueno import trace

    model = Model.load(model_file("llama", "Q8_0"), device="gpu")
    model.prefill(TOKENS[:3])
    with trace.capture() as t:
        model.decode(TOKENS[3])
    ops = [s for s in t.spans if s["category"] == "op"]
    assert ops and all(s["backend"] == "cupy" for s in ops)
    moved = {s["name"]: s["bytes"] for s in t.spans if s["category"] == "transfer"}
    assert moved["to_device"] == 4 * model.config.dim  # the token's embedding row
    assert moved["to_host"] == 4 * model.config.vocab_size  # the logits


def test_run_cli_on_gpu_gives_the_cpu_text(model_file, capsys):
    from trueno.cli.main import main

    path = str(model_file("llama"))
    args = ["run", "-m", path, "-p", "the cat", "-n", "8", "--temp", "0"]
    assert main(args) == 0
    cpu_out = capsys.readouterr().out
    assert main([*args, "--device", "gpu"]) == 0
    assert capsys.readouterr().out == cpu_out


@pytest.mark.parametrize("qtype", [None, "Q4_1", "Q8_0"])  # cuBLAS per row; batched kernels
def test_batch_engine_on_gpu_gives_each_sequence_its_lone_tokens(qtype, model_file):
    """``trueno serve --device gpu``'s engine: three sequences batched get the tokens each
    gets alone in the engine (no vector's sum depends on the others) and from the model's
    own one-token decode (the batched kernel sums a vector as the matvec kernel does)."""
    from trueno.llm.batch import BatchEngine, BatchSequence
    from trueno.llm.generate import generate_tokens

    model = Model.load(model_file("llama", qtype), device="gpu")
    prompts = [TOKENS[:4], TOKENS[2:9], TOKENS[:2]]
    expect = []
    for p in prompts:
        model.reset()
        expect.append(list(generate_tokens(model, p, 8, temperature=0.0, stop_at_eog=False)))

    def seqs():
        return [BatchSequence(p, 8, stop_at_eog=False) for p in prompts]

    alone = [BatchEngine(model, 1).run([s])[0] for s in seqs()]
    assert BatchEngine(model, 3).run(seqs()) == alone == expect
