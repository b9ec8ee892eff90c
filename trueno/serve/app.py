"""The HTTP side: Starlette routes, OpenAI response shapes and a spec-exact SSE writer.

Handlers parse JSON, render chat templates, tokenize and detokenize (in worker threads for
the CPU-bound parts); generation itself happens on the engine thread.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from time import perf_counter_ns

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from trueno.llm.batch import BatchSequence
from trueno.llm.generate import _partial_stop
from trueno.llm.sampler import Sampler
from trueno.serve import schema
from trueno.serve.engine import Choice, EngineThread
from trueno.serve.metrics import Metrics
from trueno.serve.schema import APIError, GenerationRequest

OPEN_PATHS = ("/health", "/metrics")  # answered without an API key (as llama-server does)


class LogitBias:
    """A Sampler processor adding OpenAI's logit_bias (token id -> bias)."""

    def __init__(self, bias: dict[int, float]) -> None:
        self.bias = bias

    def __call__(self, logits, history):
        for tok, b in self.bias.items():
            if tok < len(logits):
                logits[tok] += b
        return logits


class TextStream:
    """Detokenizes one choice's tokens incrementally, holding back text that could be the
    start of a stop string; ``stopped`` once one appeared (the text before it is kept)."""

    def __init__(self, tokenizer, stop: list[str]) -> None:
        self.decoder = tokenizer.decode_stream()
        self.stop, self.pending, self.stopped = tuple(stop), "", False
        self.text, self.n_tokens = [], 0

    def push(self, token: int) -> str:
        self.n_tokens += 1
        self.pending += self.decoder.push(token)
        return self._emit(final=False)

    def flush(self) -> str:
        if self.stopped:
            return ""
        self.pending += self.decoder.flush()
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        out = self.pending
        if self.stop:
            hit = min((i for i in (out.find(s) for s in self.stop) if i >= 0), default=-1)
            if hit >= 0:
                self.stopped, out, self.pending = True, out[:hit], ""
                self.text.append(out)
                return out
            hold = 0 if final else _partial_stop(out, self.stop)
            out, self.pending = out[: len(out) - hold], out[len(out) - hold :]
        else:
            self.pending = ""
        self.text.append(out)
        return out


class Server:
    """Everything a route needs: the model (once loaded), the engine thread, the limits."""

    def __init__(self, alias: str, n_slots: int, queue: int, api_key: str | None,
                 ctx_shift: bool = False, threads: int | None = None) -> None:  # fmt: skip
        self.alias, self.n_slots, self.queue_limit = alias, n_slots, queue
        self.ctx_shift, self.threads = ctx_shift, threads  # threads: the engine's kernels
        self.api_key = api_key
        self.metrics = Metrics(n_slots)
        self.model = None
        self.engine: EngineThread | None = None
        self.live = 0  # sequences submitted and not finished (event-loop side only)
        self.created = int(time.time())
        self.chat = None
        self.exporter = None  # a trueno.serve.tracing.Exporter when requests are traced

    def trace_to(self, endpoint: str) -> None:
        """Trace every request and send its spans to this OTLP/HTTP endpoint."""
        from trueno.serve.tracing import Exporter

        self.exporter = Exporter(endpoint)

    def attach(self, model) -> None:
        """The model is loaded: start the engine thread (then /health says ok)."""
        from trueno.llm.chat import ChatSession

        self.chat = ChatSession(model)  # the template, bos and eos, as `trueno chat` uses them
        self.engine = EngineThread(model, self.n_slots, self.metrics, self.ctx_shift,
                                   self.threads)  # fmt: skip
        self.engine.start()  # warms the batched kernels up on its own thread, then returns
        self.model = model

    def close(self) -> None:
        if self.engine is not None:
            self.engine.stop()

    @property
    def ready(self) -> bool:
        return self.model is not None

    # ---- prompts ------------------------------------------------------------------------------
    def chat_ids(self, messages: list[dict]) -> list[int]:
        chat, tok = self.chat, self.model.tokenizer
        chat.messages = messages
        rendered = chat.prompt()
        ids = tok.encode(rendered, add_special=False, parse_special=True)
        if tok.add_bos and not (chat.bos and rendered.startswith(chat.bos)):
            ids = [tok.bos_id, *ids]
        return list(ids)

    def prompt_ids(self, prompt) -> list[int]:
        if isinstance(prompt, str):
            return list(self.model.tokenizer.encode(prompt, add_special=True, parse_special=True))
        vocab = self.model.config.vocab_size
        bad = [t for t in prompt if t >= vocab]
        if bad:
            raise APIError(f"token id {bad[0]} is out of the vocabulary ({vocab})", param="prompt")
        return prompt


def build_app(server: Server) -> Starlette:
    async def health(request: Request) -> Response:
        if not server.ready:
            return JSONResponse({"status": "loading model"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4")

    async def models(request: Request) -> Response:
        _check(request, server)
        card = {"id": server.alias, "object": "model", "created": server.created,
                "owned_by": "trueno"}  # fmt: skip
        if server.ready:
            card["meta"] = {"n_ctx": server.model.ctx, "n_vocab": server.model.config.vocab_size}
        return JSONResponse({"object": "list", "data": [card]})

    async def tokenize(request: Request) -> Response:
        body = await _body(request, server)
        content, add_special = schema.parse_tokenize(body)
        tok = server.model.tokenizer
        ids = await run_in_threadpool(tok.encode, content, add_special=add_special,
                                      parse_special=True)  # fmt: skip
        return JSONResponse({"tokens": list(ids)})

    async def detokenize(request: Request) -> Response:
        body = await _body(request, server)
        ids = server.prompt_ids(schema.parse_detokenize(body))
        text = await run_in_threadpool(server.model.tokenizer.decode, ids)
        return JSONResponse({"content": text})

    async def chat_completions(request: Request) -> Response:
        body = await _body(request, server)
        req = schema.parse_chat(body)
        ids = await run_in_threadpool(server.chat_ids, req.messages)
        return await _generate(request, server, req, ids, chat=True)

    async def completions(request: Request) -> Response:
        body = await _body(request, server)
        req = schema.parse_completion(body)
        ids = await run_in_threadpool(server.prompt_ids, req.prompt)
        return await _generate(request, server, req, ids, chat=False)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/detokenize", detokenize, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ]

    async def api_error(request: Request, exc: APIError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def http_error(request: Request, exc) -> Response:
        err = APIError(str(exc.detail), status=exc.status_code,
                       code="not_found" if exc.status_code == 404 else None)  # fmt: skip
        return JSONResponse(err.body(), status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception) -> Response:
        err = APIError(f"internal error: {exc}", status=500, type="server_error")
        return JSONResponse(err.body(), status_code=500)

    from contextlib import asynccontextmanager

    from starlette.exceptions import HTTPException

    @asynccontextmanager
    async def lifespan(app):
        yield
        server.close()

    return Starlette(
        routes=routes,
        exception_handlers={
            APIError: api_error,
            HTTPException: http_error,
            Exception: server_error,
        },  # fmt: skip
        lifespan=lifespan,
    )


# ---- request plumbing -------------------------------------------------------------------------
def _check(request: Request, server: Server) -> None:
    if server.api_key:
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not secrets.compare_digest(token.encode(), server.api_key.encode()):
            raise APIError("invalid or missing API key", status=401, code="invalid_api_key")


async def _body(request: Request, server: Server) -> dict:
    _check(request, server)
    if not server.ready:
        raise APIError("the model is loading", status=503, type="server_error",
                       code="model_loading", headers={"Retry-After": "1"})  # fmt: skip
    return schema.parse_json(await request.body())


def _sampler(req: GenerationRequest, index: int) -> Sampler:
    s = req.sampling
    seed = None if s.seed is None else s.seed + index  # choice i of a seeded request: seed + i
    return Sampler(
        temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p,
        repeat_penalty=s.repeat_penalty, presence_penalty=s.presence_penalty,
        frequency_penalty=s.frequency_penalty, seed=seed,
        processors=[LogitBias(s.logit_bias)] if s.logit_bias else (),
    )  # fmt: skip


async def _generate(request, server: Server, req: GenerationRequest, ids, chat: bool):
    model = server.model
    if req.model is not None and req.model not in (server.alias, ""):
        raise APIError(f"the model '{req.model}' does not exist (this server has "
                       f"'{server.alias}')", status=404, param="model",
                       code="model_not_found")  # fmt: skip
    if not ids:
        raise APIError("the prompt is empty", param="messages" if chat else "prompt")
    if len(ids) >= model.ctx:
        raise APIError(
            f"this model's context is {model.ctx} tokens, the prompt has {len(ids)}",
            param="messages" if chat else "prompt", code="context_length_exceeded",
        )  # fmt: skip
    if server.live + req.n > server.n_slots + server.queue_limit:
        raise APIError("the server is busy: every slot and the queue are full", status=503,
                       type="server_error", code="overloaded",
                       headers={"Retry-After": "1"})  # fmt: skip
    max_tokens = req.max_tokens or model.ctx
    rid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
    trace = None
    if server.exporter is not None:
        from trueno.serve.tracing import RequestTrace

        trace = RequestTrace("request", request.headers.get("traceparent"), request_id=rid,
                             endpoint=request.url.path, prompt_tokens=len(ids), n=req.n,
                             stream=req.stream)  # fmt: skip
    events: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def finished(reason: str) -> None:
        server.live -= 1
        server.metrics.requests.labels(reason).inc()

    seqs = [BatchSequence(ids, max_tokens, _sampler(req, i), logprobs=req.logprobs,
                          n_keep=req.n_keep,
                          tag=Choice(i, events, loop, finished),
                          spans=None if trace is None else []) for i in range(req.n)]  # fmt: skip
    streams = [TextStream(model.tokenizer, req.stop) for _ in seqs]
    state = _Run(server, seqs, streams, chat, trace)
    for seq in seqs:
        server.live += 1
        server.engine.submit(seq)
    meta = dict(id=rid, created=int(time.time()), model=server.alias)
    if req.stream:
        gen = _sse(state, events, req, meta, chat, len(ids))
        return StreamingResponse(gen, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})  # fmt: skip
    watcher = asyncio.ensure_future(_watch_disconnect(request, events))
    try:
        while not state.done:
            item = await events.get()
            if item is None:  # the client left: drop its sequences now
                return Response(status_code=499)
            state.apply(*item)
    finally:
        watcher.cancel()
        state.cancel()
        state.export()
    choices = []
    for i, st in enumerate(streams):
        text = "".join(st.text)
        reason, logprobs = state.reasons[i], state.take_logprobs(i)
        if chat:
            choices.append({"index": i, "message": {"role": "assistant", "content": text},
                            "logprobs": logprobs, "finish_reason": reason})  # fmt: skip
        else:
            choices.append({"index": i, "text": text, "logprobs": logprobs,
                            "finish_reason": reason})  # fmt: skip
    body = {**meta, "object": "chat.completion" if chat else "text_completion",
            "choices": choices, "usage": state.usage(len(ids))}  # fmt: skip
    return JSONResponse(body)


async def _watch_disconnect(request: Request, events: asyncio.Queue) -> None:
    """Wake the waiting handler (a None event) when the client disconnects."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            events.put_nowait(None)
            return


class _Run:
    """The choices of one request as their events arrive."""

    def __init__(self, server: Server, seqs, streams, chat: bool, trace=None) -> None:
        self.server, self.seqs, self.streams, self.chat = server, seqs, streams, chat
        self.trace, self.t_submit_ns = trace, perf_counter_ns()
        self.detok = [[0, 0, 0] for _ in seqs]  # first, last, busy ns (traced only)
        self.reasons: list[str | None] = [None] * len(seqs)
        # (token, logprob, top) of each choice's tokens not yet sent, and its text offset
        self.logprobs: list[list] = [[] for _ in seqs]
        self.offsets = [0] * len(seqs)
        self.open = len(seqs)  # choices the engine still runs
        self.error: Exception | None = None

    @property
    def done(self) -> bool:
        return self.open == 0

    def apply(self, index: int, ev, error) -> str | None:
        """Take one event; the text it adds to choice ``index`` (None when it ended)."""
        if error is not None:
            self.error = error
        if ev.finish_reason is not None:
            self.open -= 1
            if self.reasons[index] is None:
                self.reasons[index] = {"length": "length"}.get(ev.finish_reason, "stop")
                if ev.finish_reason == "error":
                    raise APIError(f"generation failed: {error}", status=500,
                                   type="server_error")  # fmt: skip
                return self.streams[index].flush()
            return None
        if self.reasons[index] is not None:  # stopped by a stop string, cancel in flight
            return None
        st = self.streams[index]
        if self.trace is None:
            text = st.push(ev.token)
        else:
            t0 = perf_counter_ns()
            text = st.push(ev.token)
            d = self.detok[index]
            d[0], d[1] = d[0] or t0, perf_counter_ns()
            d[2] += d[1] - t0
        if ev.logprob is not None:
            self.logprobs[index].append((ev.token, ev.logprob, ev.top))
        if st.stopped:
            self.reasons[index] = "stop"
            self.seqs[index].cancel()
        return text

    def take_logprobs(self, index: int) -> dict | None:
        """OpenAI's logprobs object for choice ``index``'s tokens not sent yet (None when
        it did not ask): chat's ``content`` entries, or the completions' parallel lists."""
        if self.seqs[index].logprobs is None:
            return None
        entries, self.logprobs[index] = self.logprobs[index], []
        tokenizer = self.server.model.tokenizer

        def text_of(token: int) -> str:
            return tokenizer.token_to_piece(token, special=True).decode("utf-8", "replace")

        if self.chat:

            def item(token: int, logprob: float) -> dict:
                raw = tokenizer.token_to_piece(token, special=True)
                return {"token": text_of(token), "logprob": logprob, "bytes": list(raw)}

            content = [{**item(t, lp), "top_logprobs": [item(a, alp) for a, alp in top]}
                       for t, lp, top in entries]  # fmt: skip
            return {"content": content, "refusal": None}
        tokens = [text_of(t) for t, _, _ in entries]
        offsets = []
        for text in tokens:
            offsets.append(self.offsets[index])
            self.offsets[index] += len(text)
        return {
            "tokens": tokens,
            "token_logprobs": [lp for _, lp, _ in entries],
            "top_logprobs": [{text_of(a): alp for a, alp in top} for _, _, top in entries],
            "text_offset": offsets,
        }

    def cancel(self) -> None:
        for seq in self.seqs:
            seq.cancel()

    def export(self) -> None:
        """Send the request's spans (once; tracing on only), however the request ended."""
        trace, self.trace = self.trace, None
        if trace is None:
            return
        for i, seq in enumerate(self.seqs):
            trace.add_choice(i, self.t_submit_ns, seq, tuple(self.detok[i]))
        done = sum(st.n_tokens for st in self.streams)
        reasons = ",".join(str(r) for r in self.reasons)
        self.server.exporter.submit(trace.finish(completion_tokens=done, finish_reasons=reasons),
                                    trace.traceparent)  # fmt: skip

    def usage(self, n_prompt: int) -> dict:
        done = sum(st.n_tokens for st in self.streams)
        return {"prompt_tokens": n_prompt, "completion_tokens": done,
                "total_tokens": n_prompt + done}  # fmt: skip


def _event(payload) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


async def _sse(state: _Run, events: asyncio.Queue, req, meta, chat: bool, n_prompt: int):
    """``data: {chunk}`` events, a usage chunk (include_usage), then ``data: [DONE]``; the
    sequences are cancelled however this ends (a client disconnect closes it)."""
    obj = "chat.completion.chunk" if chat else "text_completion"
    usage = {"usage": None} if req.include_usage else {}

    def chunk(index, text: str | None, reason: str | None, logprobs=None, role=False) -> bytes:
        if chat:
            delta = {"role": "assistant", "content": ""} if role else {}
            if text:
                delta["content"] = text
            c = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}
        else:
            c = {"index": index, "text": text or "", "logprobs": logprobs,
                 "finish_reason": reason}  # fmt: skip
        return _event({**meta, "object": obj, "choices": [c], **usage})

    try:
        if chat:
            for i in range(len(state.seqs)):
                yield chunk(i, None, None, role=True)
        while not state.done:
            index, ev, error = await events.get()
            before = state.reasons[index]
            try:
                text = state.apply(index, ev, error)
            except APIError as exc:
                yield _event(exc.body())
                break
            ended = before is None and state.reasons[index] is not None
            # a token's logprobs go out with its text (or the finish chunk, if held back)
            logprobs = state.take_logprobs(index) if text or ended else None
            if text:
                yield chunk(index, text, None, logprobs)
                logprobs = None
            if ended:
                yield chunk(index, None, state.reasons[index], logprobs)
        if req.include_usage:
            yield _event({**meta, "object": obj, "choices": [], "usage": state.usage(n_prompt)})
        yield b"data: [DONE]\n\n"
    finally:
        state.cancel()
        state.export()
