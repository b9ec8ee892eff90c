"""The real-GPU tests of test_gpu_model.py and test_gpu_parity.py, run without a GPU over an
emulated cupy (emulated_cupy.py): every RawKernel launch is checked against the kernel's PTX
parameters (nvcc), and the Python glue (weight upload, device buffers, launches, copies,
tracing, the ops backend's kernel table) is checked end to end against the CPU model and the
numpy reference. The CUDA code itself does not run here. Skips where a real GPU runs the real
tests, or without nvcc."""

from __future__ import annotations

import sys

import emulated_cupy
import numpy as np
import pytest

# the real-GPU tests, collected here again to run over the emulation
from test_gpu_model import (  # noqa: F401
    test_batch_engine_on_gpu_gives_each_sequence_its_lone_tokens,
    test_gpu_decode_at_depth_matches_cpu,
    test_gpu_decode_is_traced_as_cupy_ops_and_copies,
    test_gpu_model_matches_cpu_model,
    test_gpu_quantized_model_matches_float64_reference,
    test_run_cli_on_gpu_gives_the_cpu_text,
    test_weights_and_cache_live_on_the_device,
)
from test_gpu_parity import (  # noqa: F401
    test_a_measured_gpu_threshold_sends_host_data_to_the_gpu,
    test_elementwise_and_reductions,
    test_forced_cupy_on_host_data_copies_in_and_out_traced,
    test_matmul_cublas,
    test_op_without_gpu_kernel_needs_permission,
    test_public_api_keeps_device_arrays_on_device_and_traces_copies,
    test_rowwise_one_kernel_each,
    test_softmax_special_values_match_numpy,
)
from test_gpu_transformer import (  # noqa: F401
    test_attend_one,
    test_attend_one_refuses_what_its_kernel_cannot_take,
)

from trueno.quant.gpu import KERNEL_OF, MATMUL_KERNEL_OF

pytestmark = pytest.mark.usefixtures("emulated_gpu")
# the modules that import cupy at their top
CUPY_MODULES = ("trueno.backends.cuda.ops", "trueno.llm.gpu_kernels", "trueno.llm.gpu_graph")


@pytest.fixture(scope="module")
def kernel_abi(nvcc_path):
    from trueno.backends.cuda import source_names, source_path
    from trueno.backends.cuda.nvcc import compile_ptx, entry_params

    res = compile_ptx("sm_80", [source_path(n) for n in source_names()], nvcc=nvcc_path)
    assert res.ok, res.log
    abi = {}
    for ptx in res.ptx.values():
        abi.update(entry_params(ptx))
    return abi


@pytest.fixture
def emulated_gpu(kernel_abi, monkeypatch):
    from trueno import backends
    from trueno.backends import cuda, cupy_backend  # imported before the emulation

    if cupy_backend.available():
        pytest.skip("a real GPU is present: test_gpu_model.py runs on it")
    cp, launches = emulated_cupy.build(kernel_abi)
    emulated_cupy.register_quant([*KERNEL_OF.values(), *MATMUL_KERNEL_OF.values()])
    monkeypatch.setitem(sys.modules, "cupy", cp)
    # modules that bind cupy (and cache kernels) at import: imported afresh over this cupy
    for name in CUPY_MODULES:
        package, _, leaf = name.rpartition(".")
        monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.delattr(sys.modules[package], leaf, raising=False)
    monkeypatch.setattr(cupy_backend, "_status", (True, ""))
    monkeypatch.setattr(backends, "_availability", {})
    monkeypatch.setattr(backends, "_loaded", {})
    monkeypatch.setattr(cuda, "_modules", {})
    from trueno.backends.cuda.ops import register_all

    table = cupy_backend._KernelTable()
    register_all(table)
    monkeypatch.setattr(cupy_backend, "KERNELS", table)
    yield launches
    for name in CUPY_MODULES:
        package, _, leaf = name.rpartition(".")
        sys.modules.pop(name, None)
        if hasattr(sys.modules[package], leaf):
            delattr(sys.modules[package], leaf)


@pytest.fixture
def gpu(emulated_gpu):
    """test_gpu_transformer's fixture over the emulated cupy (its own is module-scoped)."""
    import cupy as cp

    from trueno.llm import gpu_kernels as transformer

    return cp, transformer


def test_every_decode_kernel_is_launched(emulated_gpu, model_file):
    from trueno.llm import Model

    model = Model.load(model_file("gemma3", "Q8_0"), device="gpu")
    model.prefill([1, 2, 3])
    model.decode(4)
    launched = emulated_gpu.counts
    for name in (
        "rms_norm_f32",
        "rope_f32",
        "kv_store_f32",
        "attend_one_f32",
        "matvec_q8_0",
        "gelu_tanh_mul",
    ):
        assert launched.get(name, 0) > 0, (name, launched)


@pytest.mark.parametrize("t", list(KERNEL_OF), ids=lambda t: t.name)
def test_prepare_gpu_launches_fit_every_quant_kernel(t, emulated_gpu):
    from gguf import GGMLQuantizationType, quants
    from test_quant_kernels import random_blocks

    from trueno.device import to_device, to_host
    from trueno.quant.gpu import prepare_gpu

    rows, cols = 5, 512
    rng = np.random.default_rng(int(t))
    w = random_blocks(t, rows, cols, rng)
    ref_w = quants.dequantize(w, GGMLQuantizationType(int(t))).astype(np.float64)
    mat = prepare_gpu(w, t, (rows, cols))
    x = rng.standard_normal(cols).astype(np.float32)
    np.testing.assert_allclose(to_host(mat.matvec(to_device(x))), ref_w @ x, rtol=1e-5, atol=1e-5)
    xs = rng.standard_normal((9, cols)).astype(np.float32)
    np.testing.assert_allclose(to_host(mat.matmul(xs)), xs @ ref_w.T, rtol=1e-5, atol=1e-5)
    assert emulated_gpu.counts[KERNEL_OF[t]] == 1
    assert emulated_gpu.counts[MATMUL_KERNEL_OF[t]] == 1


def test_decode_is_replayed_as_one_graph_with_the_eager_logits(emulated_gpu, model_file):
    """The second decode captures the step, later ones replay it; the emulated capture replays
    the recorded launches on the same buffers, so a value baked in at capture (the position)
    would give stale logits here, and an allocation or copy inside the step would raise."""
    from trueno.llm import Model, runtime

    path = model_file("gemma3", "Q8_0")  # sliding window, q/k norms, post norms
    logits = {}
    for graphs in (False, True):
        model = Model.load(path, device=runtime.gpu(graphs=graphs))
        steps = [model.prefill([1, 2, 3])]
        steps += [model.decode(t).copy() for t in (4, 5, 6, 7, 8, 9)]
        model.reset()  # a new, longer prompt: the same graph serves it
        steps += [model.prefill([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11])]
        steps += [model.decode(t).copy() for t in (12, 13)]
        logits[graphs] = np.array(steps)
        if graphs:
            assert model._step_graph.active and model._step_graph.failed is None
    assert emulated_gpu.counts["graph_capture"] == 1
    assert emulated_gpu.counts["graph_launch"] == 7  # decode 1 ran eagerly, 2 was captured
    np.testing.assert_allclose(logits[True], logits[False], rtol=1e-6, atol=1e-6)


def test_a_step_that_cannot_be_captured_warns_and_stays_eager(emulated_gpu):
    import cupy as cp

    from trueno.llm.gpu_graph import StepGraph

    out = cp.zeros(4, dtype=cp.float32)
    calls = []

    def step():  # allocates a temporary: not capturable
        calls.append(1)
        out[...] = cp.ones(4, dtype=cp.float32) * np.float32(len(calls))

    g = StepGraph(step)
    g.run()
    with pytest.warns(RuntimeWarning, match="capture of the decode step failed"):
        g.run()
    g.run()
    assert not g.active and len(calls) == 4  # eager, capture attempt, eager rerun, eager
    np.testing.assert_array_equal(out.get(), np.full(4, 4, np.float32))


def test_the_emulation_reimports_every_module_that_binds_cupy():
    from trueno.backends.cuda import PACKAGE_DIR

    binds = {
        ".".join(("trueno", *p.relative_to(PACKAGE_DIR).with_suffix("").parts))
        for p in PACKAGE_DIR.rglob("*.py")
        if "\nimport cupy as cp\n" in p.read_text()
    }
    assert binds == set(CUPY_MODULES)


def test_batched_decode_on_gpu_is_one_launch_per_product(emulated_gpu, model_file):
    """``trueno serve --device gpu``: the batch engine's steps on the GPU runtime. A decode
    step of 3 sequences runs each quantized product as one batched launch (no matvec launch),
    and each sequence gets the tokens it gets alone in the engine and from the GPU model's
    own decode (the batched kernel sums each vector as the matvec kernel does)."""
    from trueno.llm import Model, runtime
    from trueno.llm.batch import BatchEngine, BatchSequence
    from trueno.llm.generate import generate_tokens

    model = Model.load(model_file("llama", "Q8_0"), device=runtime.gpu(graphs=False))
    prompts = [[1, 5, 9, 13], [1, 30, 31, 32, 33], [1, 7]]
    expect = []
    for p in prompts:
        model.reset()
        expect.append(list(generate_tokens(model, p, 6, temperature=0.0, stop_at_eog=False)))

    def seq(p):
        return BatchSequence(p, 6, stop_at_eog=False)

    alone = [BatchEngine(model, 1).run([seq(p)])[0] for p in prompts]
    engine = BatchEngine(model, 3)
    seqs = [engine.add(seq(p)) for p in prompts]
    engine.step()  # the three prompts (and their first tokens)
    counts = dict(emulated_gpu.counts)
    events = engine.step()  # one decode step of all three
    assert sorted(e.seq.slot for e in events) == [0, 1, 2]
    launched = {k: v - counts.get(k, 0) for k, v in emulated_gpu.counts.items()}
    assert launched.get("matvec_q8_0", 0) == 0
    from trueno.quant.gpu import GpuQuantMatrix

    w = model.weights
    products = [m for lw in w.layers for m in lw.used_matrices()] + [w.output]
    quantized = sum(isinstance(m, GpuQuantMatrix) for m in products)
    assert quantized >= 2 * model.config.n_layers  # the rest: f32 (columns not of 32)
    assert launched["matmul_q8_0"] == quantized  # one launch per product for all three
    while engine.busy:
        engine.step()
    assert [s.tokens for s in seqs] == alone == expect
    # context shift on device arrays: a 16-position slot generates 40 tokens
    small = Model.load(model_file("llama", "Q8_0"), ctx_size=16, device=runtime.gpu(graphs=False))
    shifting = BatchEngine(small, 1, ctx_shift=True)
    (long,) = [shifting.add(BatchSequence(prompts[0], 40, stop_at_eog=False))]
    while shifting.busy:
        shifting.step()
        assert shifting.slots[0].cache.n <= 16
    assert long.finish_reason == "length" and len(long.tokens) == 40


def test_serve_on_gpu_answers_with_the_engines_tokens(emulated_gpu, model_file):
    """The server's routes over a GPU model (Starlette's in-process client)."""
    pytest.importorskip("starlette")
    pytest.importorskip("prometheus_client")
    from starlette.testclient import TestClient

    from trueno.llm import Model, runtime
    from trueno.llm.batch import BatchEngine, BatchSequence
    from trueno.serve.app import Server, build_app

    model = Model.load(model_file("llama", "Q8_0"), device=runtime.gpu(graphs=False))
    ids = [1, 5, 9, 13]
    (tokens,) = BatchEngine(model, 1).run([BatchSequence(ids, 5, stop_at_eog=False)])
    server = Server("tiny", 2, 2, None)
    server.attach(model)
    try:
        with TestClient(build_app(server)) as client:
            body = {"prompt": ids, "max_tokens": 5, "temperature": 0, "n": 2,
                    "logit_bias": {"2": -100}}  # fmt: skip
            r = client.post("/v1/completions", json=body).json()
    finally:
        server.close()
    expect = model.tokenizer.decode(tokens)
    assert [c["text"] for c in r["choices"]] == [expect, expect]
    assert r["usage"]["completion_tokens"] == 10
