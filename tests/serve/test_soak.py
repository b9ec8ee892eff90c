"""A soak: many concurrent openai clients, a third of them leaving mid-stream or timing out;
afterwards no slot, KV entry or queue place is held and /metrics agrees with the clients."""

from __future__ import annotations

import random
import re
import resource
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
from serve_helpers import EOS, N_SLOTS, wait_idle

N_REQUESTS = 300  # about 16 s here (2 shared cores)
N_CLIENTS = 10  # more than slots + queue: some requests are refused with 503


def counters(live) -> dict:
    text = httpx.get(live.url + "/metrics").text
    out = {}
    for name, labels, value in re.findall(r"^(trueno_\w+?)(\{[^}]*\})? (\S+)$", text, re.M):
        out[name + labels] = float(value)
    return out


def one(live, i: int) -> tuple[str, int]:
    """One client's request: ("done" | "left" | "gave_up" | "refused", content chunks it
    received). "left": a stream closed mid-way; "gave_up": a non-streamed request whose
    client timed out (perhaps before the server read it: then it never reached the engine)."""
    rng = random.Random(i)
    client = live.client(timeout=30)
    prompt = " ".join(rng.choice(["the", "cat", "a", "dog", "in", "house"]) for _ in range(6))
    kw = dict(model="tiny", prompt=prompt, max_tokens=rng.randint(3, 24), temperature=0.8,
              seed=i, logit_bias={str(EOS): -100})  # fmt: skip
    leave = i % 3 == 0
    try:
        if leave and i % 2 == 0:  # a non-streamed request whose client gives up
            try:
                r = httpx.post(live.url + "/v1/completions", json={**kw, "max_tokens": 2000},
                               timeout=0.02 + rng.random() * 0.05)  # fmt: skip
            except httpx.TimeoutException:
                return "gave_up", 0
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                return "refused", 0
            assert r.status_code == 200, r.text
            return "done", 0
        stream = client.completions.create(**kw, stream=True)
        got = 0
        for chunk in stream:
            got += bool(chunk.choices and chunk.choices[0].text)
            if leave and got >= rng.randint(1, 3):
                stream.close()  # the client disconnects mid-stream
                return "left", got
        return "done", got
    except openai.APIStatusError as exc:
        assert exc.status_code == 503 and exc.response.headers["retry-after"] == "1"
        return "refused", 0


def test_soak_leaves_no_slot_held_and_metrics_agree(live):
    wait_idle(live)
    before = counters(live)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with ThreadPoolExecutor(N_CLIENTS) as pool:
        results = list(pool.map(lambda i: one(live, i), range(N_REQUESTS)))
    wait_idle(live)
    after = counters(live)
    outcomes = [r for r, _ in results]
    accepted = N_REQUESTS - outcomes.count("refused")
    assert outcomes.count("done") >= N_REQUESTS // 2
    # a third of the clients leave (i % 3 == 0); one refused with 503 has nothing to leave
    left = outcomes.count("left") + outcomes.count("gave_up")
    assert left >= 0.9 * (N_REQUESTS // 3) and outcomes.count("left") > 0

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    finished = {s: delta(f'trueno_requests_total{{status="{s}"}}')
                for s in ("stop", "length", "cancelled")}  # fmt: skip
    # every sequence that reached the engine ended exactly once (a client that gave up before
    # the server read its request sent none)
    assert accepted - outcomes.count("gave_up") <= sum(finished.values()) <= accepted
    assert 0 < finished["cancelled"] <= left
    assert delta("trueno_generation_tokens_total") >= sum(n for _, n in results)
    for gauge in ("trueno_slots_in_use", "trueno_requests_running", "trueno_requests_waiting"):
        assert after[gauge] == 0, gauge
    # the engine's own books: every slot free, and each slot's cache holds its token list
    engine = live.server.engine.engine
    assert sorted(engine.free) == list(range(N_SLOTS)) and not engine.busy
    for slot, tokens in zip(engine.slots, engine.slot_tokens, strict=True):
        assert slot.cache.n == len(tokens)
    assert live.server.live == 0
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert growth_mb < 200, f"peak RSS grew {growth_mb:.0f} MB over the soak"
