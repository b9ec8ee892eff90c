"""``trueno run`` / ``trueno chat`` say on stderr why generation stopped short of ``-n``."""

from __future__ import annotations

import io

from llm_models import gguf_metadata, gguf_tensors, random_hf_state, spm_vocab_metadata, write_gguf

from trueno.cli.main import main
from trueno.gguf.constants import Keys

GREEDY = ["--temp", "0", "-t", "1", "--no-display-prompt"]


def test_all_tokens_asked_for_says_nothing(tiny_model_path, capsys):
    path, _ = tiny_model_path("llama")
    assert main(["run", "-m", str(path), "-p", "the cat", "-n", "5", *GREEDY]) == 0
    assert "stopped" not in capsys.readouterr().err


def test_context_full(tiny_model_path, capsys):
    path, _ = tiny_model_path("llama")
    assert main(["run", "-m", str(path), "-p", "the cat", "-c", "32", "-n", "100", *GREEDY]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("stopped"))
    n = int(line.split()[2])
    assert 20 < n < 32 and f"stopped after {n} of 100 tokens: the context is full (32" in line
    assert f"decode: {n} tokens" in err
    prompt = int(err.split("prompt: ")[1].split()[0])
    assert f"(32 tokens, {prompt} of them the prompt; raise -c)" in line


def test_context_full_in_chat(tiny_model_path, capsys, monkeypatch):
    path, _ = tiny_model_path("llama")
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat\n"))
    assert main(["chat", "-m", str(path), "-n", "400", "--temp", "0", "-c", "80", "-t", "1"]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("[stopped"))
    n = int(line.split()[2])
    assert 0 < n < 80 and line.startswith(f"[stopped after {n} of 400 tokens: the context is full")
    assert "(80 tokens, " in line and line.endswith("raise -c)]")


def test_stop_string(tiny_model_path, capsys):
    path, _ = tiny_model_path("llama")
    main(["run", "-m", str(path), "-p", "the cat", "-n", "12", *GREEDY])
    text = capsys.readouterr().out
    stop = text[len(text) // 2 :][:3]  # text the model generates greedily, past the start
    assert stop.strip()
    main(["run", "-m", str(path), "-p", "the cat", "-n", "12", "--stop", stop, *GREEDY])
    out, err = capsys.readouterr()
    assert stop not in out and out == text[: text.index(stop)]
    assert f"tokens: a stop string was generated: {stop!r}" in err


def eos_model(tmp_path, first_token):
    md = {**gguf_metadata("llama"), **spm_vocab_metadata(), Keys.EOS_ID: first_token}
    return write_gguf(tmp_path / "eos.gguf", md, gguf_tensors("llama", random_hf_state("llama")))


def test_end_of_sequence_in_run_and_chat(tmp_path, capsys, monkeypatch):
    from trueno.llm import Model
    from trueno.llm.generate import generate_tokens

    # a model whose end-of-sequence token is the one it picks greedily after 4 tokens
    path = eos_model(tmp_path, 2)
    model = Model.load(path, ctx_size=64)
    gen = generate_tokens(model, "the cat", max_tokens=6, stop_at_eog=False, temperature=0.0)
    ids = list(gen)
    path = eos_model(tmp_path, ids[4])
    model = Model.load(path, ctx_size=64)
    n = list(generate_tokens(model, "the cat", max_tokens=6, temperature=0.0))
    assert len(n) <= 4
    assert main(["run", "-m", str(path), "-p", "the cat", "-n", "50", *GREEDY]) == 0
    err = capsys.readouterr().err
    assert f"stopped after {len(n)} of 50 tokens: the model generated its end-of-sequence" in err

    monkeypatch.setattr("sys.stdin", io.StringIO("the cat\n"))
    assert main(["chat", "-m", str(path), "-n", "400", "--temp", "0", "-c", "1024"]) == 0
    err = capsys.readouterr().err
    assert "of 400 tokens: the model generated its end-of-sequence token]" in err
