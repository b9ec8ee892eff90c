"""Malformed requests over HTTP to the live server: every answer is a 2xx or an OpenAI-shaped
4xx, never a 500, and the server keeps serving (hypothesis over bodies and raw bytes)."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_helpers import wait_idle

ENDPOINTS = ["/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"]
FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

scalars = (st.none() | st.booleans() | st.integers(-(2**66), 2**66)
           | st.floats(allow_nan=False) | st.text(max_size=8))  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["role", "content", "type", "text", "include_usage"])
            | st.text(max_size=3),
            inner,
            max_size=3,
        )
    ),
    max_leaves=8,
)
# a generation that passes validation stays short: its token limits come from small values
limits = st.none() | st.integers(-2, 3) | st.sampled_from(["3", 2.5, True, [], {}])
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "assistant", "x"]),
            "content": st.text(max_size=20) | values,
        }
    ),
    max_size=3,
)
bodies = st.fixed_dictionaries(
    {"max_tokens": limits},
    optional={
        "max_completion_tokens": limits,
        "n": st.none() | st.integers(-1, 3) | values,
        "prompt": st.text(max_size=30) | st.lists(st.integers(-5, 40000), max_size=5) | values,
        "messages": messages | values,
        "content": st.text(max_size=30) | values,
        "tokens": st.lists(st.integers(-5, 70000), max_size=5) | values,
        "model": st.sampled_from(["tiny", "", "gpt-4"]) | values,
        "stream": values,
        "stream_options": values,
        "temperature": values,
        "top_p": values,
        "top_k": values,
        "min_p": values,
        "seed": values,
        "stop": values,
        "logit_bias": values,
        "logprobs": values,
        "top_logprobs": values,
        "echo": values,
        "add_special": values,
    },
)


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]


@pytest.fixture(scope="module")
def http(live):
    with httpx.Client(base_url=live.url, timeout=60) as client:
        yield client
    wait_idle(live)


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
def test_json_bodies(http, endpoint, body):
    check(http.post(endpoint, content=json.dumps(body)))


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), raw=st.binary(max_size=64)
       | st.text(max_size=40).map(str.encode))  # fmt: skip
def test_raw_bytes(http, endpoint, raw):
    check(http.post(endpoint, content=raw))


def test_the_server_still_serves_after_the_fuzz(live, http):
    wait_idle(live)
    r = http.post("/v1/completions", json={"prompt": "the cat", "max_tokens": 3})
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] in ("stop", "length")
