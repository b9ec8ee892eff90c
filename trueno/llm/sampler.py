"""Token sampling: logits processors (penalties, custom ones) then greedy or the llama.cpp
chain top-k -> top-p -> min-p -> temperature -> draw, from a seeded RNG the sampler owns."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

LogitsProcessor = Callable[[np.ndarray, Sequence[int]], np.ndarray]
"""``f(logits, history) -> logits``: may modify ``logits`` (a float32 copy) in place."""


class RepetitionPenalty:
    """CTRL-style penalty on tokens seen in the last ``last_n`` tokens: positive logits are
    divided by ``penalty``, negative ones multiplied (llama.cpp ``--repeat-penalty``)."""

    def __init__(self, penalty: float, last_n: int = 64) -> None:
        self.penalty, self.last_n = float(penalty), int(last_n)

    def __call__(self, logits: np.ndarray, history: Sequence[int]) -> np.ndarray:
        seen = _recent(history, self.last_n)
        if seen.size and self.penalty != 1.0:
            v = logits[seen]
            logits[seen] = np.where(v > 0, v / self.penalty, v * self.penalty)
        return logits


class PresencePenalty:
    """Subtract ``presence`` from every seen token and ``frequency`` times its count."""

    def __init__(self, presence: float = 0.0, frequency: float = 0.0, last_n: int = 64) -> None:
        self.presence, self.frequency, self.last_n = float(presence), float(frequency), last_n

    def __call__(self, logits: np.ndarray, history: Sequence[int]) -> np.ndarray:
        recent = np.asarray(history[-self.last_n :] if self.last_n > 0 else history, np.int64)
        if recent.size:
            ids, counts = np.unique(recent, return_counts=True)
            logits[ids] -= self.presence + self.frequency * counts
        return logits


def _recent(history: Sequence[int], last_n: int) -> np.ndarray:
    recent = history[-last_n:] if last_n > 0 else history
    return np.unique(np.asarray(recent, dtype=np.int64))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / e.sum()


class Sampler:
    """Picks the next token from logits. ``temperature <= 0`` is greedy (argmax).

    Disabled values follow llama.cpp: top_k 0, top_p 1.0, min_p 0.0, repeat_penalty 1.0.
    ``processors`` run first, in order, after the built-in penalties.
    """

    def __init__(
        self,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repeat_last_n: int = 64,
        seed: int | None = None,
        processors: Sequence[LogitsProcessor] = (),
    ) -> None:
        if top_p <= 0 or top_p > 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if min_p < 0 or min_p > 1:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        self.temperature, self.top_k = float(temperature), int(top_k)
        self.top_p, self.min_p = float(top_p), float(min_p)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.processors: list[LogitsProcessor] = []
        if repeat_penalty != 1.0:
            self.processors.append(RepetitionPenalty(repeat_penalty, repeat_last_n))
        if presence_penalty or frequency_penalty:
            self.processors.append(
                PresencePenalty(presence_penalty, frequency_penalty, repeat_last_n)
            )
        self.processors.extend(processors)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def __call__(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        return self.sample(logits, history)

    def sample(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        """The next token id for ``logits`` (vocab,) given the ``history`` of token ids."""
        x = logits
        if self.processors:
            x = np.array(logits, dtype=np.float32)
            for proc in self.processors:
                x = proc(x, history)
        if self.greedy:
            return int(np.argmax(x))
        ids, v = self.candidates(x)
        p = softmax(v / self.temperature)
        return int(
            ids[min(np.searchsorted(np.cumsum(p), self.rng.random() * p.sum()), len(ids) - 1)]
        )

    def candidates(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token ids surviving top-k, top-p and min-p (sorted by logit, descending) and their
        logits as float64."""
        n = x.shape[0]
        if 0 < self.top_k < n:
            ids = np.argpartition(-x, self.top_k - 1)[: self.top_k]
        else:
            ids = np.flatnonzero(np.isfinite(x))
        v = x[ids].astype(np.float64)
        order = np.argsort(-v, kind="stable")
        ids, v = ids[order], v[order]
        if self.top_p < 1.0 and len(ids) > 1:
            cum = np.cumsum(softmax(v))
            keep = int(np.searchsorted(cum, self.top_p)) + 1  # smallest set with mass >= top_p
            ids, v = ids[:keep], v[:keep]
        if self.min_p > 0.0 and len(ids) > 1:
            keep = int(np.count_nonzero(v >= v[0] + np.log(self.min_p)))  # p >= min_p * p_max
            ids, v = ids[: max(keep, 1)], v[: max(keep, 1)]
        return ids, v
