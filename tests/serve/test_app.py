"""``trueno serve`` end to end: a live server on 127.0.0.1 driven by the real openai client."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from llm_models import alone_logprobs
from serve_helpers import API_KEY, CTX, EOS, N_SLOTS, QUEUE, SHIFT_CTX, metric, wait_idle

from trueno.llm import Model
from trueno.llm.generate import generate

NO_EOS = {str(EOS): -100}
CHAT = [{"role": "user", "content": "the cat is"}]


@pytest.fixture(scope="module")
def ref(tiny_gguf):
    """A second copy of the model, run alone in this process (the reference)."""
    return Model.load(tiny_gguf)


def alone(ref, ids, n, **sampling) -> str:
    ref.reset()
    return "".join(generate(ref, ids, max_tokens=n, **sampling))


def prompt_ids(live, text: str) -> list[int]:
    return httpx.post(live.url + "/tokenize", json={"content": text, "add_special": True}).json()[
        "tokens"
    ]


# ---- the endpoints -----------------------------------------------------------------------------
def test_health_models_tokenize(live):
    assert httpx.get(live.url + "/health").json() == {"status": "ok"}
    models = live.client().models.list()
    assert [m.id for m in models.data] == ["tiny"]
    ids = prompt_ids(live, "the cat")
    assert ids[0] == 1 and len(ids) > 2
    text = httpx.post(live.url + "/detokenize", json={"tokens": ids[1:]}).json()["content"]
    assert text.strip() == "the cat"


def test_health_is_503_while_loading():
    from starlette.testclient import TestClient

    from trueno.serve.app import Server, build_app

    client = TestClient(build_app(Server("x", 1, 0, None)))
    assert client.get("/health").status_code == 503
    r = client.post("/v1/completions", json={"prompt": "a"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"


def test_completion_equals_in_process_greedy(live, ref):
    ids = prompt_ids(live, "the cat is on the")
    expect = alone(ref, ids, 12, temperature=0.0)
    r = live.client().completions.create(model="tiny", prompt=ids, max_tokens=12, temperature=0)
    assert r.object == "text_completion" and r.model == "tiny"
    assert r.choices[0].text == expect
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == len(ids)
    s = live.client().completions.create(model="tiny", prompt="the cat is on the", max_tokens=12,
                                         temperature=0)  # fmt: skip
    assert s.choices[0].text == expect  # the string prompt tokenizes to the same ids


def test_chat_non_streamed_and_streamed_agree(live):
    c = live.client()
    kw = dict(model="tiny", messages=CHAT, max_tokens=10, temperature=0, logit_bias=NO_EOS)
    full = c.chat.completions.create(**kw)
    assert full.object == "chat.completion" and full.id.startswith("chatcmpl-")
    msg = full.choices[0].message
    assert msg.role == "assistant" and full.choices[0].finish_reason == "length"
    assert full.usage.completion_tokens == 10
    assert full.usage.total_tokens == full.usage.prompt_tokens + 10
    chunks = list(c.chat.completions.create(**kw, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == msg.content
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(ch.usage is None for ch in chunks)  # no usage chunk unless asked


def test_stream_usage_chunk(live):
    chunks = list(
        live.client().completions.create(
            model="tiny", prompt="the", max_tokens=7, temperature=0, logit_bias=NO_EOS,
            stream=True, stream_options={"include_usage": True},
        )
    )  # fmt: skip
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == 7
    assert all(ch.usage is None for ch in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "length"


def test_sse_is_spec_exact(live):
    body = {"prompt": "the", "max_tokens": 3, "temperature": 0, "stream": True}
    with httpx.stream("POST", live.url + "/v1/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(r.iter_bytes()).decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: {") and "\n" not in e for e in events[:-2])


def test_stop_string(live, ref):
    ids = prompt_ids(live, "the cat")
    free = alone(ref, ids, 20, temperature=0.0)
    stop = free[3:5]
    r = live.client().completions.create(model="tiny", prompt=ids, max_tokens=20, temperature=0,
                                         stop=[stop])  # fmt: skip
    assert r.choices[0].text == free[: free.find(stop)]
    assert r.choices[0].finish_reason == "stop"


# ---- batching: same tokens alone and together ------------------------------------------------
def test_concurrent_seeded_requests_equal_alone(live, ref):
    prompts = ["the cat", "a dog is", "in the house", "the", "he is the", "th", "a b c", "in"]
    ids = [prompt_ids(live, p) for p in prompts]
    opts = dict(temperature=0.9, top_p=0.95, top_k=30, min_p=0.0)
    expect = [alone(ref, x, 16, seed=10 + i, **opts) for i, x in enumerate(ids)]

    def ask(i):
        r = live.client().completions.create(
            model="tiny", prompt=ids[i], max_tokens=16, seed=10 + i, temperature=0.9,
            top_p=0.95, extra_body={"top_k": 30, "min_p": 0.0},
        )  # fmt: skip
        return r.choices[0].text

    with ThreadPoolExecutor(len(ids)) as pool:  # 8 requests over 4 slots: some queue
        got = list(pool.map(ask, range(len(ids))))
    assert got == expect
    wait_idle(live)


def test_n_choices_are_their_own_sequences(live, ref):
    ids = prompt_ids(live, "the cat")
    r = live.client().completions.create(model="tiny", prompt=ids, max_tokens=8, n=3, seed=7,
                                         temperature=1.0)  # fmt: skip
    assert [c.index for c in r.choices] == [0, 1, 2]
    for i, c in enumerate(r.choices):
        assert c.text == alone(ref, ids, 8, seed=7 + i, temperature=1.0, top_p=1.0)


# ---- cancellation and backpressure ------------------------------------------------------------
def long_body(stream=True):
    return {"model": "tiny", "prompt": "the cat", "max_tokens": CTX - 20, "temperature": 0,
            "logit_bias": NO_EOS, "stream": stream}  # fmt: skip


def cancelled(live) -> float:
    if 'status="cancelled"' not in httpx.get(live.url + "/metrics").text:
        return 0.0
    return metric(live, "trueno_requests_total", '{status="cancelled"}')


def test_stream_disconnect_frees_the_slot(live):
    wait_idle(live)
    before = cancelled(live)
    with httpx.stream("POST", live.url + "/v1/completions", json=long_body()) as r:
        lines = r.iter_lines()
        for _ in range(5):
            next(lines)
        assert metric(live, "trueno_slots_in_use") == 1
    wait_idle(live)
    assert cancelled(live) == before + 1


def test_non_streamed_disconnect_frees_the_slot(live):
    wait_idle(live)
    before = cancelled(live)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(live.url + "/v1/completions", json=long_body(stream=False), timeout=0.1)
    wait_idle(live)
    assert cancelled(live) == before + 1


def test_full_queue_gets_503_with_retry_after(live):
    wait_idle(live)
    streams = []
    try:
        for _ in range(N_SLOTS + QUEUE):
            cm = httpx.stream("POST", live.url + "/v1/completions", json=long_body())
            r = cm.__enter__()
            assert r.status_code == 200
            streams.append(cm)
        r = httpx.post(live.url + "/v1/completions", json=long_body())
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "overloaded"
        assert metric(live, "trueno_slots_in_use") == N_SLOTS
        assert httpx.get(live.url + "/health").status_code == 200  # answers under full load
    finally:
        for cm in streams:
            cm.__exit__(None, None, None)
    wait_idle(live)


def test_a_full_slot_stops_with_length(live):
    ids = prompt_ids(live, "the")
    r = live.client().completions.create(model="tiny", prompt=ids, temperature=0,
                                         logit_bias=NO_EOS)  # fmt: skip
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens + r.usage.completion_tokens == CTX + 1


# ---- bad input --------------------------------------------------------------------------------
def error_of(r, status):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


@pytest.mark.parametrize(
    "body, param",
    [
        ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "a", "max_tokens": "5"}, "max_tokens"),
        ({"prompt": "a", "temperature": -0.1}, "temperature"),
        ({"prompt": "a", "temperature": "hot"}, "temperature"),
        ({"prompt": "a", "top_p": 0}, "top_p"),
        ({"prompt": "a", "top_p": 1.5}, "top_p"),
        ({"prompt": "a", "n": 0}, "n"),
        ({"prompt": "a", "stream": "yes"}, "stream"),
        ({"prompt": "a", "stop": 5}, "stop"),
        ({"prompt": 5}, "prompt"),
        ({}, "prompt"),
        ({"prompt": [1, 10**9]}, "prompt"),
    ],
)
def test_bad_completion_fields_are_400(live, body, param):
    err = error_of(httpx.post(live.url + "/v1/completions", json=body), 400)
    assert err["param"] == param and err["type"] == "invalid_request_error"


def test_bad_bodies(live):
    url = live.url + "/v1/chat/completions"
    error_of(httpx.post(url, content=b"{not json"), 400)
    assert "UTF-8" in error_of(httpx.post(url, content=b'{"a": "\xff"}'), 400)["message"]
    error_of(httpx.post(url, content=b"[1, 2]"), 400)
    assert error_of(httpx.post(url, json={"model": "tiny"}), 400)["param"] == "messages"
    err = error_of(httpx.post(url, json={"messages": [{"role": "x", "content": "a"}]}), 400)
    assert err["param"] == "messages[0].role"
    err = error_of(httpx.post(url, json={"model": "gpt-9", "messages": CHAT}), 404)
    assert err["code"] == "model_not_found"
    error_of(httpx.get(live.url + "/nope"), 404)


def test_context_length_exceeded(live):
    r = httpx.post(live.url + "/v1/completions", json={"prompt": [5] * (CTX + 1)})
    assert error_of(r, 400)["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as info:
        live.client().chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "a " * CTX}]
        )
    assert info.value.code == "context_length_exceeded"


def test_bad_requests_do_not_disturb_a_running_stream(live, ref):
    ids = prompt_ids(live, "the cat")
    expect = alone(ref, ids, 40, temperature=0.0)
    out = {}

    def run():
        r = live.client().completions.create(model="tiny", prompt=ids, max_tokens=40,
                                             temperature=0, stream=True)  # fmt: skip
        out["text"] = "".join(ch.choices[0].text for ch in r)

    t = threading.Thread(target=run)
    t.start()
    for _ in range(20):
        httpx.post(live.url + "/v1/completions", content=b"\x00\xff garbage")
    t.join()
    assert out["text"] == expect


def test_api_key(live_key):
    url = live_key.url + "/v1/completions"
    assert error_of(httpx.post(url, json={"prompt": "a"}), 401)["code"] == "invalid_api_key"
    bad = {"Authorization": "Bearer wrong"}
    error_of(httpx.post(url, json={"prompt": "a"}, headers=bad), 401)
    with pytest.raises(openai.AuthenticationError):
        live_key.client(api_key="wrong").models.list()
    r = live_key.client(api_key=API_KEY).completions.create(model="tiny", prompt="a", max_tokens=2)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert httpx.get(live_key.url + "/health").status_code == 200


# ---- logprobs ---------------------------------------------------------------------------------
def test_completion_logprobs_are_the_models(live, ref):
    ids = prompt_ids(live, "the cat is")
    r = live.client().completions.create(model="tiny", prompt=ids, max_tokens=6, temperature=0,
                                         logprobs=3, logit_bias=NO_EOS)  # fmt: skip
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text and len(lp.tokens) == 6
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(6)]
    ref_tokens = list(ref.generate_tokens(ids, max_tokens=6, temperature=0.0, stop_at_eog=False))
    expect = alone_logprobs(ref, ids, ref_tokens)  # log softmax before each token, float64
    for i, (t, e) in enumerate(zip(ref_tokens, expect, strict=True)):
        assert lp.token_logprobs[i] == pytest.approx(e[t], abs=1e-4)
        top = lp.top_logprobs[i]
        assert len(top) == 3 and max(top.values()) == pytest.approx(e.max(), abs=1e-4)
        assert sorted(top.values(), reverse=True) == pytest.approx(sorted(e)[::-1][:3], abs=1e-4)


def test_chat_logprobs_streamed_equal_non_streamed(live):
    c = live.client()
    kw = dict(model="tiny", messages=CHAT, max_tokens=8, temperature=0, logit_bias=NO_EOS,
              logprobs=True, top_logprobs=2)  # fmt: skip
    full = c.chat.completions.create(**kw)
    content = full.choices[0].logprobs.content
    assert len(content) == full.usage.completion_tokens == 8
    assert "".join(e.token for e in content) == full.choices[0].message.content
    for e in content:
        assert e.logprob <= 0 and len(e.top_logprobs) == 2
        assert e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob
        assert e.top_logprobs[0].token == e.token  # greedy takes the most likely
        assert bytes(e.bytes).decode() == e.token
    streamed = []
    for ch in c.chat.completions.create(**kw, stream=True):
        if ch.choices[0].logprobs is not None:
            streamed += ch.choices[0].logprobs.content
    assert [e.token for e in streamed] == [e.token for e in content]
    # the second request reuses the first's cached prompt and recomputes only its last token
    # (one row through the matvec, not BLAS's batch): the same tokens, logprobs to rounding
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in content], abs=1e-4)
    plain = c.chat.completions.create(model="tiny", messages=CHAT, max_tokens=2)
    assert plain.choices[0].logprobs is None


# ---- context shift ----------------------------------------------------------------------------
def test_ctx_shift_generates_past_the_context(live_shift):
    """--ctx-shift: a full slot drops half of what follows n_keep and goes on; the tokens are
    those of the in-process engine with the same shift."""
    from trueno.llm.batch import BatchEngine, BatchSequence
    from trueno.llm.sampler import Sampler
    from trueno.serve.app import LogitBias, TextStream

    ids = prompt_ids(live_shift, "the cat is on the")
    n = 3 * SHIFT_CTX
    r = live_shift.client().completions.create(
        model="tiny", prompt=ids, max_tokens=n, temperature=0, logit_bias=NO_EOS,
        extra_body={"n_keep": 2},
    )  # fmt: skip
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == n
    wait_idle(live_shift)
    model = live_shift.model  # the server's own model, its engine thread idle now
    engine = BatchEngine(model, 1, ctx_shift=True)
    sampler = Sampler(temperature=0.0, processors=[LogitBias({EOS: -100.0})])
    (tokens,) = engine.run([BatchSequence(ids, n, sampler, n_keep=2)])
    text = TextStream(model.tokenizer, [])
    assert r.choices[0].text == "".join([text.push(t) for t in tokens] + [text.flush()])
    bad = httpx.post(live_shift.url + "/v1/completions", json={"prompt": "a", "n_keep": -2})
    assert error_of(bad, 400)["param"] == "n_keep"


# ---- sampling fields and metrics --------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [("presence_penalty", 1.5), ("frequency_penalty", 1.0), ("repeat_penalty", 1.5)],
)
def test_penalties_reach_the_sampler(live, ref, field, value):
    """Each penalty changes this greedy stream (the check is not vacuous) and the server's
    tokens are those of the in-process Sampler with the same penalty."""
    ids = prompt_ids(live, "the cat")
    plain = alone(ref, ids, 24, temperature=0.0, min_p=0.0)
    expect = alone(ref, ids, 24, temperature=0.0, min_p=0.0, **{field: value})
    assert expect != plain
    r = live.client().completions.create(model="tiny", prompt=ids, max_tokens=24, temperature=0,
                                         extra_body={field: value, "min_p": 0.0})  # fmt: skip
    assert r.choices[0].text == expect


def test_logit_bias_forces_a_token(live, ref):
    ids = prompt_ids(live, "the cat")
    word = prompt_ids(live, " dog")[-1]
    r = live.client().completions.create(model="tiny", prompt=ids, max_tokens=5, temperature=0.7,
                                         seed=1, logit_bias={str(word): 100})  # fmt: skip
    assert r.choices[0].text == ref.tokenizer.decode([word] * 5)


def test_metrics_count_what_a_request_did(live):
    wait_idle(live)
    names = ("trueno_prompt_tokens_total", "trueno_prompt_tokens_cached_total",
             "trueno_generation_tokens_total", "trueno_time_to_first_token_seconds_count",
             "trueno_inter_token_latency_seconds_count")  # fmt: skip
    before = {n: metric(live, n) for n in names}
    ids = prompt_ids(live, "a dog is in the house")
    r = live.client().completions.create(model="tiny", prompt=ids, max_tokens=9, temperature=0,
                                         logit_bias=NO_EOS)  # fmt: skip
    assert r.usage.completion_tokens == 9
    d = {n: metric(live, n) - before[n] for n in names}
    assert d["trueno_generation_tokens_total"] == 9
    assert d["trueno_prompt_tokens_total"] + d["trueno_prompt_tokens_cached_total"] == len(ids)
    assert d["trueno_time_to_first_token_seconds_count"] == 1
    assert d["trueno_inter_token_latency_seconds_count"] == 8
    for gauge in ("trueno_requests_running", "trueno_requests_waiting", "trueno_slots_in_use"):
        assert metric(live, gauge) == 0
    assert metric(live, "trueno_slots_total") == N_SLOTS
    text = httpx.get(live.url + "/metrics").text
    assert 'trueno_time_to_first_token_seconds_bucket{le="1.0"}' in text
    assert 'trueno_inter_token_latency_seconds_bucket{le="+Inf"}' in text


# ---- the exact OpenAI shapes (raw JSON, not the client's lenient models) ------------------------
def sse_payloads(live, path: str, body: dict) -> list:
    import json

    with httpx.stream("POST", live.url + path, json={**body, "stream": True}) as r:
        raw = b"".join(r.iter_bytes()).decode()
    events = [e[len("data: ") :] for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_response_shapes_are_openais(live):
    usage_keys = {"prompt_tokens", "completion_tokens", "total_tokens"}
    body = {"model": "tiny", "max_tokens": 3, "temperature": 0, "logit_bias": NO_EOS}
    chat = httpx.post(live.url + "/v1/chat/completions", json={**body, "messages": CHAT}).json()
    assert set(chat) == {"id", "object", "created", "model", "choices", "usage"}
    assert chat["object"] == "chat.completion" and isinstance(chat["created"], int)
    (choice,) = chat["choices"]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason"}
    assert set(choice["message"]) == {"role", "content"} and choice["finish_reason"] == "length"
    assert set(chat["usage"]) == usage_keys
    text = httpx.post(live.url + "/v1/completions", json={**body, "prompt": "the"}).json()
    assert set(text) == {"id", "object", "created", "model", "choices", "usage"}
    assert text["object"] == "text_completion" and text["id"].startswith("cmpl-")
    assert set(text["choices"][0]) == {"index", "text", "logprobs", "finish_reason"}
    chunks = sse_payloads(live, "/v1/chat/completions", {**body, "messages": CHAT})
    assert all(set(c) == {"id", "object", "created", "model", "choices"} for c in chunks)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(set(c["choices"][0]) == {"index", "delta", "logprobs", "finish_reason"}
               for c in chunks)  # fmt: skip
    assert [c["choices"][0]["finish_reason"] for c in chunks].count("length") == 1
    with_usage = {**body, "prompt": "the", "stream_options": {"include_usage": True}}
    chunks = sse_payloads(live, "/v1/completions", with_usage)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and set(chunks[-1]["usage"]) == usage_keys
    assert {c["object"] for c in chunks} == {"text_completion"}
