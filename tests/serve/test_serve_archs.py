"""``trueno serve`` over every architecture: the tiny transformers models of
tests/llm/llm_archs.py (qwen3, gemma2, granite, olmo2, phi3, smollm3), the MoE models of
tests/llm/llm_moe.py (mixtral, qwen3moe) and the tiny qwen2 and gemma3 of llm_models (llama:
test_app.py), each served live on 127.0.0.1 and asked
by the real openai client for more completions at once than there are slots; every answer
equals the same request run alone in this process (the batch engine changes no token)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from llm_archs import ARCHS, hf_model, to_gguf
from llm_models import (
    alone_logprobs,
    gguf_metadata,
    gguf_tensors,
    random_hf_state,
    spm_vocab_metadata,
    write_gguf,
)
from llm_moe import TINY_MOE, moe_gguf_tensors, moe_metadata, quantized, random_moe_state
from serve_helpers import N_SLOTS, LiveServer, wait_idle

from trueno.llm import Model
from trueno.llm.generate import generate, generate_tokens

MOE = ("mixtral", "qwen3moe")
FIRST = ("qwen2", "gemma3")  # the families before issue 15
PROMPTS = [[1, 5, 9, 13], [1, 30, 31, 32, 33, 34, 35], [1, 7], [1, 40, 41, 42, 43, 44],
           [1, 20, 21], [1, 50, 51, 52, 53, 54, 55, 56]]  # fmt: skip
OPTS = dict(temperature=0.9, top_p=0.95, top_k=30, min_p=0.0)
N = 12
# a request may reuse a slot's cached prefix (here BOS) and prefill the rest in other chunks
# than alone: logprobs equal to rounding (test_app.py's bound); a halved gemma2 softcap in the
# batched attention moves them by 2e-3
ATOL = 1e-4


def arch_gguf(arch: str, directory) -> object:
    """The tiny model of ``arch`` as a GGUF file (MoE experts in Q8_0: the quantized
    multi-vector kernels of the batched decode; the dense families in F32)."""
    if arch in FIRST:
        md = {**gguf_metadata(arch), **spm_vocab_metadata()}
        return write_gguf(directory / f"{arch}.gguf", md, gguf_tensors(arch, random_hf_state(arch)))
    if arch in TINY_MOE:
        tensors = quantized(moe_gguf_tensors(arch, random_moe_state(arch)), "Q8_0")
        return write_gguf(directory / f"{arch}.gguf", moe_metadata(arch), tensors)
    _, hf = hf_model(arch)
    md, tensors, _ = to_gguf(arch, hf)
    return write_gguf(directory / f"{arch}.gguf", md, tensors)


@pytest.mark.parametrize("arch", [*ARCHS, *MOE, *FIRST])
def test_concurrent_completions_equal_alone(arch, tmp_path):
    """Text, token logprobs and top logprobs of every answer are those of the request alone
    (logprobs: a small logit error in the batched path changes no sampled token here)."""
    path = arch_gguf(arch, tmp_path)
    ref = Model.load(path)
    assert ref.config.arch == TINY_MOE.get(arch, {}).get("arch", arch)
    assert ref.config.n_experts > 0 if arch in MOE else ref.config.n_experts == 0
    texts, logprobs = [], []
    for i, ids in enumerate(PROMPTS):
        ref.reset()
        texts.append("".join(generate(ref, ids, max_tokens=N, seed=10 + i, **OPTS)))
        ref.reset()
        toks = list(generate_tokens(ref, ids, max_tokens=N, seed=10 + i, **OPTS))
        lp = alone_logprobs(ref, ids, toks)
        logprobs.append((lp[np.arange(len(toks)), toks], np.sort(lp, axis=1)[:, ::-1][:, :3]))
    assert len(set(texts)) > 1  # the answers really differ
    live = LiveServer(path)
    try:

        def ask(i):
            return live.client().completions.create(
                model="tiny", prompt=PROMPTS[i], max_tokens=N, seed=10 + i, temperature=0.9,
                top_p=0.95, logprobs=3, extra_body={"top_k": 30, "min_p": 0.0},
            ).choices[0]  # fmt: skip

        assert len(PROMPTS) > N_SLOTS  # some requests queue behind the full slots
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            got = list(pool.map(ask, range(len(PROMPTS))))
        assert [c.text for c in got] == texts
        for c, (token_lp, top) in zip(got, logprobs, strict=True):
            np.testing.assert_allclose(c.logprobs.token_logprobs, token_lp, rtol=0, atol=ATOL)
            got_top = [sorted(t.values(), reverse=True) for t in c.logprobs.top_logprobs]
            for row, expect in zip(got_top, top, strict=True):  # pieces may share a text
                assert row == pytest.approx(expect[: len(row)], abs=ATOL) and row
        wait_idle(live)
    finally:
        live.stop()
