"""``trueno run`` / ``trueno chat`` on tiny models: streaming output, stats, one-line errors."""

from __future__ import annotations

import io

import pytest
from llm_models import gguf_metadata, gguf_tensors, random_hf_state, spm_vocab_metadata, write_gguf

from trueno.cli.main import main
from trueno.gguf.constants import Keys


def test_run_streams_prompt_and_text_then_stats(tiny_model_path, capsys):
    path, _ = tiny_model_path("llama")
    rc = main(["run", "-m", str(path), "-p", "the cat", "-n", "6", "--temp", "0", "-t", "1"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert out.startswith("the cat") and len(out) > len("the cat")
    assert "load:" in err and "prompt:" in err and "decode: 6 tokens" in err


def test_run_is_reproducible_with_a_seed(tiny_model_path, capsys):
    path, _ = tiny_model_path("qwen2")
    args = ["run", "-m", str(path), "-p", "the", "-n", "8", "--temp", "1.0", "-s", "5"]
    main(args)
    a = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == a


def test_missing_model_is_one_line_error(tmp_path, capsys):
    rc = main(["run", "-m", str(tmp_path / "missing.gguf"), "-p", "x"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "not found" in err


def test_unsupported_architecture_is_one_line_error(tmp_path, capsys):
    md = {k.replace("llama.", "rwkv."): v for k, v in gguf_metadata("llama").items()}
    md[Keys.ARCHITECTURE] = "rwkv"
    path = write_gguf(tmp_path / "m.gguf", md, gguf_tensors("llama", random_hf_state("llama")))
    rc = main(["run", "-m", str(path), "-p", "x"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "rwkv" in err


def test_prompt_longer_than_context_is_one_line_error(tmp_path, capsys):
    md = {**gguf_metadata("llama"), **spm_vocab_metadata()}
    path = write_gguf(tmp_path / "m.gguf", md, gguf_tensors("llama", random_hf_state("llama")))
    rc = main(["run", "-m", str(path), "-p", "the cat " * 20, "-c", "16"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "context" in err


def test_chat_answers_each_line(tiny_model_path, capsys, monkeypatch):
    path, _ = tiny_model_path("gemma3")
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat\nthe end\n"))
    rc = main(["chat", "-m", str(path), "-n", "3", "--temp", "0", "-c", "1024"])
    out = capsys.readouterr().out
    assert rc == 0 and out.count("\n") == 2


@pytest.mark.parametrize("cache_type", ["f32", "f16", "bf16"])
def test_chat_takes_either_cache_type(cache_type, tiny_model_path, capsys, monkeypatch):
    from trueno.llm import Model

    path, _ = tiny_model_path("gemma3")
    models = []
    load = Model.load
    monkeypatch.setattr(Model, "load", lambda *a, **kw: models.append(load(*a, **kw)) or models[-1])
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat\n"))
    rc = main(["chat", "-m", str(path), "-n", "3", "--temp", "0", "-ctk", cache_type])
    assert rc == 0 and capsys.readouterr().out.count("\n") == 1
    assert [m.state.cache.cache_type for m in models] == [cache_type]


def test_unsupported_tensor_type_is_one_line_error(tmp_path, capsys):
    import numpy as np

    from trueno.gguf.constants import BLOCK_LAYOUT, GGMLType

    tensors = gguf_tensors("llama", random_hf_state("llama"))
    rows, cols = tensors["blk.0.attn_q.weight"].shape
    elems, nbytes = BLOCK_LAYOUT[GGMLType.Q8_1]  # 32-element blocks, no kernels for it
    blocks = np.zeros((rows, cols // elems * nbytes), np.uint8)
    tensors["blk.0.attn_q.weight"] = (blocks, GGMLType.Q8_1, (rows, cols))
    md = {**gguf_metadata("llama"), **spm_vocab_metadata()}
    path = write_gguf(tmp_path / "m.gguf", md, tensors)
    rc = main(["run", "-m", str(path), "-p", "x"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Q8_1" in err


def test_run_on_a_missing_gpu_is_one_line_error_naming_the_extra(tiny_model_path, capsys):
    import pytest

    from trueno.backends import cupy_backend

    if cupy_backend.available():
        pytest.skip("a GPU is present: tests/gpu/test_gpu_model.py runs --device gpu")
    path, _ = tiny_model_path("llama")
    rc = main(["run", "-m", str(path), "-p", "x", "-n", "2", "--device", "gpu"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "trueno[gpu]" in err


def test_run_takes_either_cache_type(tiny_model_path, capsys, monkeypatch):
    from trueno.llm import Model

    path, _ = tiny_model_path("llama")
    seen = []
    load = Model.load
    monkeypatch.setattr(Model, "load", lambda *a, **kw: seen.append(kw) or load(*a, **kw))
    outs = []
    for ct in ("f32", "f16", "bf16"):
        rc = main(["run", "-m", str(path), "-p", "the cat", "-n", "4", "--temp", "0",
                   "--cache-type", ct])  # fmt: skip
        assert rc == 0
        outs.append(capsys.readouterr().out)
    assert [kw["cache_type"] for kw in seen] == ["f32", "f16", "bf16"]
    assert all(o.startswith("the cat") for o in outs)
