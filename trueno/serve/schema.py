"""Validation of OpenAI request bodies into plain records, and OpenAI-shaped errors.

Pure Python (no web framework): the HTTP layer hands it the decoded JSON and turns an
:class:`APIError` into ``{"error": {"message", "type", "param", "code"}}`` with its status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_N = 16
MAX_STOP = 16
MAX_LOGPROBS = 20  # top alternatives per token (OpenAI's top_logprobs limit)


class APIError(Exception):
    """An error the client caused (4xx) or a refusal (503); ``body()`` is OpenAI's shape."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        headers: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.param, self.code = message, status, param, code
        self.type, self.headers = type, headers or {}

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)


@dataclass
class GenerationRequest:
    """What both endpoints ask for, validated. Exactly one of messages / prompt is set."""

    model: str | None
    messages: list[dict] | None = None
    prompt: str | list[int] | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    logprobs: int | None = None  # None: none; k: each token's logprob and its top k
    n_keep: int = 0  # --ctx-shift: prompt tokens kept besides BOS (-1: all; llama.cpp's field)
    sampling: SamplingParams = field(default_factory=SamplingParams)


def parse_json(raw: bytes) -> dict:
    """The request body as a JSON object, or an APIError naming what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(f"the request body is not valid UTF-8: {exc}") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise APIError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise APIError(f"the request body must be a JSON object, got {_kind(body)}")
    return body


def parse_chat(body: dict) -> GenerationRequest:
    req = _common(body)
    msgs = body.get("messages")
    if msgs is None:
        raise APIError("'messages' is a required property", param="messages")
    if not isinstance(msgs, list) or not msgs:
        raise APIError("'messages' must be a non-empty array", param="messages")
    req.messages = [_message(m, i) for i, m in enumerate(msgs)]
    top = body.get("top_logprobs")
    if _bool(body, "logprobs", False):
        req.logprobs = 0 if top is None else _int(top, "top_logprobs", lo=0, hi=MAX_LOGPROBS)
    elif top is not None:
        raise APIError("'top_logprobs' needs 'logprobs' set to true", param="top_logprobs")
    return req


def parse_completion(body: dict) -> GenerationRequest:
    req = _common(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise APIError("'prompt' is a required property", param="prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        req.prompt = prompt
    elif isinstance(prompt, list) and prompt and all(_is_int(t) and t >= 0 for t in prompt):
        req.prompt = [int(t) for t in prompt]
    else:
        raise APIError(
            "'prompt' must be a string or a non-empty array of token ids (one prompt)",
            param="prompt",
        )
    if body.get("logprobs") is not None:
        req.logprobs = _int(body["logprobs"], "logprobs", lo=0, hi=MAX_LOGPROBS)
    if body.get("echo"):
        raise APIError("echo is not supported by this server", param="echo")
    return req


def parse_tokenize(body: dict) -> tuple[str, bool]:
    content = body.get("content")
    if not isinstance(content, str):
        raise APIError("'content' must be a string", param="content")
    return content, _bool(body, "add_special", False)


def parse_detokenize(body: dict) -> list[int]:
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not all(_is_int(t) and t >= 0 for t in tokens):
        raise APIError("'tokens' must be an array of token ids", param="tokens")
    return [int(t) for t in tokens]


# ---- fields -----------------------------------------------------------------------------------
def _common(body: dict) -> GenerationRequest:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise APIError(f"'model' must be a string, got {_kind(model)}", param="model")
    req = GenerationRequest(model=model)
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    if mt is not None:
        req.max_tokens = _int(mt, param, lo=1)
    stop = body.get("stop")
    if isinstance(stop, str):
        req.stop = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if len(stop) > MAX_STOP:
            raise APIError(f"'stop' has more than {MAX_STOP} strings", param="stop")
        req.stop = list(stop)
    elif stop is not None:
        raise APIError("'stop' must be a string or an array of strings", param="stop")
    req.stop = [s for s in req.stop if s]
    if body.get("n") is not None:
        req.n = _int(body["n"], "n", lo=1, hi=MAX_N)
    req.stream = _bool(body, "stream", False)
    opts = body.get("stream_options")
    if opts is not None:
        if not isinstance(opts, dict):
            raise APIError("'stream_options' must be an object", param="stream_options")
        req.include_usage = _bool(opts, "include_usage", False, "stream_options.include_usage")
    if body.get("n_keep") is not None:
        req.n_keep = _int(body["n_keep"], "n_keep", lo=-1)
    s = req.sampling
    s.temperature = _float(body, "temperature", s.temperature, lo=0.0, hi=2.0)
    s.top_p = _float(body, "top_p", s.top_p, lo=0.0, hi=1.0, lo_open=True)
    s.min_p = _float(body, "min_p", s.min_p, lo=0.0, hi=1.0)
    s.presence_penalty = _float(body, "presence_penalty", 0.0, lo=-2.0, hi=2.0)
    s.frequency_penalty = _float(body, "frequency_penalty", 0.0, lo=-2.0, hi=2.0)
    s.repeat_penalty = _float(body, "repeat_penalty", 1.0, lo=0.0, hi=10.0, lo_open=True)
    if body.get("top_k") is not None:
        s.top_k = _int(body["top_k"], "top_k", lo=0)
    if body.get("seed") is not None:
        s.seed = _int(body["seed"], "seed", lo=0, hi=2**63 - 1)
    bias = body.get("logit_bias")
    if bias is not None:
        if not isinstance(bias, dict):
            raise APIError("'logit_bias' must be an object", param="logit_bias")
        for key in bias:
            if not (isinstance(key, str) and key.isdigit()):
                raise APIError(f"logit_bias key {key!r} is not a token id", param="logit_bias")
            s.logit_bias[int(key)] = _float(bias, key, 0.0, -100.0, 100.0, param="logit_bias")
    return req


def _message(m, i: int) -> dict:
    param = f"messages[{i}]"
    if not isinstance(m, dict):
        raise APIError(f"{param} must be an object, got {_kind(m)}", param=param)
    role = m.get("role")
    if role not in ROLES:
        raise APIError(f"{param}.role must be one of {', '.join(ROLES)}", param=f"{param}.role")
    content = m.get("content")
    if isinstance(content, list):  # content parts: only text is understood
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise APIError(f"{param}.content: only text parts are supported", param=param)
            if not isinstance(part.get("text"), str):
                raise APIError(f"{param}.content: a text part needs 'text'", param=param)
            texts.append(part["text"])
        content = "".join(texts)
    elif content is None and role == "assistant":
        content = ""
    elif not isinstance(content, str):
        raise APIError(f"{param}.content must be a string", param=f"{param}.content")
    return {"role": "system" if role == "developer" else role, "content": content}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _kind(v) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(v), "null" if v is None else "a number"
    )


def _int(v, param: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not _is_int(v):
        raise APIError(f"'{param}' must be an integer, got {_kind(v)}", param=param)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise APIError(f"'{param}' must be {bounds}, got {v}", param=param)
    return int(v)


def _float(body, key, default, lo, hi, lo_open=False, param=None) -> float:
    param = param or key
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise APIError(f"'{key}' must be a number, got {_kind(v)}", param=param)
    if v < lo or v > hi or (lo_open and v == lo):
        left = "(" if lo_open else "["
        raise APIError(f"'{key}' must be in {left}{lo}, {hi}], got {v}", param=param)
    return float(v)


def _bool(body, key, default, param=None) -> bool:
    v = body.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise APIError(f"'{key}' must be a boolean, got {_kind(v)}", param=param or key)
    return v
