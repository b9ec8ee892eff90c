"""Generation: prefill the prompt as a batch, then decode token by token with a sampler.

``generate_tokens`` yields token ids; ``generate`` yields text pieces (streaming UTF-8, never
half a character, held back while they could be the start of a stop string). Both return a
``Generation`` iterator whose ``.stats`` holds the timings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trueno import trace
from trueno.errors import ContextLengthError, ModelError
from trueno.llm.sampler import Sampler

if TYPE_CHECKING:
    from trueno.llm.model import Model

Prompt = str | Sequence[int]  # text, or token ids


@dataclass
class GenerationStats:
    n_prompt: int = 0
    n_generated: int = 0
    prompt_s: float = 0.0  # prefill time (to the first sampled token's logits)
    decode_s: float = 0.0  # decode steps and sampling (the first token's logits: prefill)
    stop_reason: str = ""  # "eos", "stop", "length", "context"
    n_cached: int = 0  # prompt tokens whose KV entries were reused from the previous call
    tokens: list[int] = field(default_factory=list)

    @property
    def prompt_tok_s(self) -> float:
        n = self.n_prompt - self.n_cached
        return n / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        steps = self.n_generated - 1  # the first token comes from the prefill logits
        return steps / self.decode_s if steps > 0 and self.decode_s > 0 else 0.0


class Generation:
    """An iterator over generated items with the run's :class:`GenerationStats`."""

    def __init__(self, items: Iterator, stats: GenerationStats) -> None:
        self._items, self.stats = items, stats

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> Any:
        return next(self._items)

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()

    def text(self) -> str:
        """Run to the end and return everything joined."""
        return "".join(self)


def make_sampler(sampler: Sampler | None = None, **kwargs: Any) -> Sampler:
    if sampler is not None:
        if kwargs:
            raise TypeError("pass either sampler= or sampling options, not both")
        return sampler
    return Sampler(**kwargs)


def encode_prompt(model: Model, prompt: Prompt) -> list[int]:
    if isinstance(prompt, str):
        return list(model.tokenizer.encode(prompt, add_special=True, parse_special=True))
    return [int(t) for t in prompt]


def _check_prompt(model, ids: list[int]) -> None:
    if not ids:
        raise ModelError("the prompt is empty (no tokens)")
    if len(ids) >= model.ctx:
        raise ContextLengthError(
            f"the prompt has {len(ids)} tokens but the context holds {model.ctx}"
        )


def _token_loop(
    model,
    ids: list[int],
    max_tokens: int,
    sampler: Sampler,
    stats: GenerationStats,
    stop_at_eog: bool,
    reuse_cache: bool,
) -> Iterator[int]:
    is_eog = model.tokenizer.is_eog if stop_at_eog else None
    stats.n_prompt = len(ids)
    history = list(ids)
    with trace.span("generate", category="llm", n_prompt=len(ids), max_tokens=max_tokens):
        t0 = time.perf_counter()
        keep = common_prefix(model.tokens, ids) if reuse_cache else 0
        model.truncate(min(keep, len(ids) - 1))  # at least one token runs, for its logits
        stats.n_cached = model.state.cache.n
        todo = ids[stats.n_cached :]
        with trace.span("prefill", category="llm", n_tokens=len(todo)):
            logits = model.prefill(todo)
        stats.prompt_s = time.perf_counter() - t0
        tok = None
        for step in range(max_tokens):
            if tok is not None and model.state.cache.n >= model.ctx:
                stats.stop_reason = "context"
                return
            t = time.perf_counter()
            with trace.span("token", category="llm", step=step):
                if tok is not None:
                    logits = model.decode(tok)  # the previous token, at the next position
                tok = sampler.sample(logits, history)
            stats.decode_s += time.perf_counter() - t
            if is_eog is not None and is_eog(tok):
                stats.stop_reason = "eos"
                return
            history.append(tok)
            stats.tokens.append(tok)
            stats.n_generated += 1
            yield tok  # outside the token span: the consumer's time is not the model's
        stats.stop_reason = "length"


def generate_tokens(
    model: Model,
    prompt: Prompt,
    max_tokens: int = 128,
    sampler: Sampler | None = None,
    stop_at_eog: bool = True,
    reuse_cache: bool = False,
    **sampling: Any,
) -> Generation:
    """Yield generated token ids for ``prompt`` (text or token ids). ``reuse_cache`` keeps
    the KV entries of the longest prefix shared with the model's previous tokens."""
    stats = GenerationStats()
    ids = encode_prompt(model, prompt)
    _check_prompt(model, ids)
    loop = _token_loop(
        model, ids, max_tokens, make_sampler(sampler, **sampling), stats, stop_at_eog, reuse_cache
    )
    return Generation(loop, stats)


def generate(
    model: Model,
    prompt: Prompt,
    max_tokens: int = 128,
    stop: Sequence[str] = (),
    sampler: Sampler | None = None,
    reuse_cache: bool = False,
    **sampling: Any,
) -> Generation:
    """Yield text pieces generated for ``prompt`` (text or token ids), stopping before any
    of the ``stop`` strings. ``sampling``: :class:`Sampler` options (temperature, top_k,
    top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty, repeat_last_n, seed),
    llama.cpp's defaults where not given."""
    tokens = generate_tokens(
        model, prompt, max_tokens, sampler, reuse_cache=reuse_cache, **sampling
    )
    pieces = _texts(model.tokenizer, tokens, tuple(s for s in stop if s), tokens.stats)
    return Generation(pieces, tokens.stats)


def _texts(
    tokenizer, tokens: Iterator[int], stop: tuple[str, ...], stats: GenerationStats
) -> Iterator[str]:
    decoder = tokenizer.decode_stream()
    pending = ""  # text held back: it may be the beginning of a stop string
    for tok in tokens:
        pending += decoder.push(tok)
        if stop:
            hit = min((i for i in (pending.find(s) for s in stop) if i >= 0), default=-1)
            if hit >= 0:
                if hit:
                    yield pending[:hit]
                stats.stop_reason = "stop"
                close = getattr(tokens, "close", None)
                if close is not None:  # stop the model loop now
                    close()
                return
            hold = _partial_stop(pending, stop)
            emit, pending = pending[: len(pending) - hold], pending[len(pending) - hold :]
        else:
            emit, pending = pending, ""
        if emit:
            yield emit
    pending += decoder.flush()
    if pending:
        yield pending


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids ``a`` and ``b`` share (the cached prefix a prompt can reuse)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _partial_stop(text: str, stop: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
