"""The request validator: every body is a record or an OpenAI-shaped 4xx, never a crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trueno.serve import schema
from trueno.serve.schema import APIError, GenerationRequest

FIELDS = ["model", "messages", "prompt", "max_tokens", "max_completion_tokens", "stop", "n",
          "stream", "stream_options", "temperature", "top_p", "top_k", "min_p", "seed",
          "presence_penalty", "frequency_penalty", "repeat_penalty", "logit_bias", "logprobs",
          "top_logprobs", "echo"]  # fmt: skip

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["role", "content", "type", "text", "include_usage",
                                       "5", "x"]) | st.text(max_size=3), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), values, max_size=8)


def check(parse, body) -> None:
    try:
        req = parse(body)
    except APIError as exc:
        assert 400 <= exc.status < 500
        err = exc.body()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]
        json.dumps(exc.body())
        return
    assert isinstance(req, GenerationRequest)
    assert req.n >= 1 and (req.max_tokens is None or req.max_tokens >= 1)
    s = req.sampling
    assert 0 <= s.temperature <= 2 and 0 < s.top_p <= 1 and 0 <= s.min_p <= 1
    assert all(isinstance(x, str) and x for x in req.stop)
    assert (req.messages is None) != (req.prompt is None)


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_fuzz_chat(body):
    check(schema.parse_chat, body)


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_fuzz_completion(body):
    check(schema.parse_completion, body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_raw_bytes(raw):
    try:
        body = schema.parse_json(raw)
    except APIError as exc:
        assert exc.status == 400
        return
    assert isinstance(body, dict)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["content", "tokens", "add_special"]), values))
def test_fuzz_tokenize_bodies(body):
    for parse in (schema.parse_tokenize, schema.parse_detokenize):
        try:
            parse(body)
        except APIError as exc:
            assert exc.status == 400


def test_a_valid_request_is_parsed():
    req = schema.parse_chat({
        "model": "m", "messages": [{"role": "developer", "content": [{"type": "text",
        "text": "be brief"}]}, {"role": "user", "content": "hi"}], "max_completion_tokens": 5,
        "stop": "x", "n": 2, "stream": True, "stream_options": {"include_usage": True},
        "temperature": 0, "top_p": 0.5, "seed": 3, "logit_bias": {"7": -100},
    })  # fmt: skip
    assert req.messages == [{"role": "system", "content": "be brief"},
                            {"role": "user", "content": "hi"}]  # fmt: skip
    assert (req.max_tokens, req.stop, req.n, req.stream, req.include_usage) == (
        5,
        ["x"],
        2,
        True,
        True,
    )
    assert req.sampling.seed == 3 and req.sampling.logit_bias == {7: -100.0}


@pytest.mark.parametrize("body, param", [
    ({"prompt": "a", "max_tokens": True}, "max_tokens"),
    ({"prompt": "a", "temperature": float("nan")}, "temperature"),
    ({"prompt": "a", "logit_bias": {"x": 1}}, "logit_bias"),
    ({"prompt": "a", "logit_bias": {"1": 101}}, "logit_bias"),
    ({"prompt": "a", "logprobs": 21}, "logprobs"),
    ({"prompt": "a", "logprobs": True}, "logprobs"),
    ({"prompt": [[1], [2]]}, "prompt"),
])  # fmt: skip
def test_rejected_fields(body, param):
    with pytest.raises(APIError) as info:
        schema.parse_completion(body)
    assert info.value.param == param and info.value.status == 400


def test_logprobs_fields():
    assert schema.parse_completion({"prompt": "a", "logprobs": 3}).logprobs == 3
    assert schema.parse_completion({"prompt": "a"}).logprobs is None
    chat = {"messages": [{"role": "user", "content": "a"}]}
    assert schema.parse_chat({**chat, "logprobs": True}).logprobs == 0
    assert schema.parse_chat({**chat, "logprobs": True, "top_logprobs": 5}).logprobs == 5
    assert schema.parse_chat({**chat, "logprobs": False}).logprobs is None
    for bad, param in (({"top_logprobs": 2}, "top_logprobs"),
                       ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
                       ({"logprobs": 1}, "logprobs")):  # fmt: skip
        with pytest.raises(APIError) as info:
            schema.parse_chat({**chat, **bad})
        assert info.value.param == param and info.value.status == 400
