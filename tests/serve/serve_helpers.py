"""A live ``trueno serve`` on 127.0.0.1 (a free port) over a tiny model from our GGUF writer:
the helpers the server tests import (a module of its own name: ``from conftest import`` finds
whichever conftest module a run loaded last)."""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))
from llm_models import (  # noqa: E402
    gguf_metadata,
    gguf_tensors,
    random_hf_state,
    spm_vocab_metadata,
    write_gguf,
)

N_SLOTS = 4
QUEUE = 4
API_KEY = "sk-test-key"
SHIFT_CTX = 48  # the context of the live_shift server


class LiveServer:
    def __init__(self, model_path: Path, api_key: str | None = None, ctx_size=None,
                 ctx_shift: bool = False) -> None:  # fmt: skip
        import uvicorn

        from trueno.cli.serve import bind
        from trueno.llm import Model
        from trueno.serve.app import Server, build_app

        self.model_path = model_path
        self.server = Server("tiny", N_SLOTS, QUEUE, api_key, ctx_shift=ctx_shift)
        self.sock = bind("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.web = uvicorn.Server(
            uvicorn.Config(build_app(self.server), log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.web.run, kwargs={"sockets": [self.sock]})
        self.thread.start()
        model = Model.load(model_path, ctx_size=ctx_size)
        model.warmup()
        self.model = model
        self.server.attach(model)
        for _ in range(200):
            if self.web.started:
                break
            time.sleep(0.05)

    def client(self, **kw):
        import openai

        return openai.OpenAI(
            base_url=self.url + "/v1", api_key=kw.pop("api_key", "none"), max_retries=0, **kw
        )

    def stop(self) -> None:
        self.web.should_exit = True
        self.thread.join(timeout=10)


CTX = 2048  # long enough that a stream can be cancelled mid-way
EOS = 2  # the tiny vocabulary's end of generation; logit_bias {EOS: -100} keeps streams going


def write_tiny(path: Path) -> Path:
    from trueno.gguf.constants import Keys

    sd = random_hf_state("llama")
    md = {**gguf_metadata("llama"), **spm_vocab_metadata()}
    md[Keys.arch(Keys.CONTEXT_LENGTH, "llama")] = CTX
    write_gguf(path, md, gguf_tensors("llama", sd))
    return path


def metric(live, name: str, labels: str = "") -> float:
    import httpx

    text = httpx.get(live.url + "/metrics").text
    m = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def wait_idle(live, timeout: float = 10.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if metric(live, "trueno_slots_in_use") == 0 and live.server.live == 0:
            return
        time.sleep(0.05)
    raise AssertionError("slots still in use")
