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


SORT_LIMIT = 4096


# logit widths below the max tried in turn for top-k's candidate set, a step of about 1.4x so
# the first set with k members holds few more. SmolLM2's 512 sampled tokens of 8 streams
# (top-k 40): median 9 tokens within 4 of the max, 96 within 8, 5824 within 16; steps of 4,
# 16, 64 partitioned those thousands: 159 -> 79 us a sampled token
TOP_K_WIDTHS = (2.0, 3.0, 4.0, 6.0, 8.0, 11.0, 16.0, 23.0, 32.0, 64.0)


def _top_k_ids(x: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k largest values (any order). The top k all lie in {x >= max - width} as soon
    as that set has k members, so the partition runs on a few hundred values, not the whole
    vocabulary (exact, only faster)."""
    top = x.max()
    if np.isfinite(top):
        for width in TOP_K_WIDTHS:
            near = np.flatnonzero(x >= top - width)
            if near.size >= k:
                return near[np.argpartition(-x[near], k - 1)[:k]]
    return np.argpartition(-x, k - 1)[:k]


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
        """Token ids surviving top-k, top-p and min-p and their logits as float64, sorted by
        logit (descending) unless top-p is off and more than SORT_LIMIT survive. top-p's
        probabilities are over the top-k set (the whole vocabulary when top-k is off), as in
        llama.cpp."""
        n = x.shape[0]
        mass = None  # softmax denominator over the full set when only its head is sorted
        if 0 < self.top_k < n:
            ids = _top_k_ids(x, self.top_k)
        else:
            ids, mass = self._head(x)
        v = x[ids].astype(np.float64)
        if self.top_p >= 1.0 and len(ids) > SORT_LIMIT:  # nothing needs the order: skip sort
            if self.min_p > 0.0:
                keep = v >= v.max() + np.log(self.min_p)
                ids, v = ids[keep], v[keep]
            return ids, v
        order = np.argsort(-v, kind="stable")
        ids, v = ids[order], v[order]
        if self.top_p < 1.0 and len(ids) > 1:
            e = np.exp(v - v[0])
            cum = np.cumsum(e) / (e.sum() if mass is None else mass)
            keep = int(np.searchsorted(cum, self.top_p)) + 1  # smallest set with mass >= top_p
            ids, v = ids[:keep], v[:keep]
        if self.min_p > 0.0 and len(ids) > 1:
            keep = int(np.count_nonzero(v >= v[0] + np.log(self.min_p)))  # p >= min_p * p_max
            ids, v = ids[: max(keep, 1)], v[: max(keep, 1)]
        return ids, v

    def _head(self, x: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Without top-k: ids that contain every survivor of top-p and min-p, and the softmax
        denominator (relative to the max) of the whole vocabulary, so that only a short head
        of it needs sorting."""
        finite = np.isfinite(x)
        top = x[finite].max() if finite.any() else 0.0
        e = np.exp(np.where(finite, x - top, -np.inf), dtype=np.float64)
        mass = float(e.sum())
        floor = top + np.log(self.min_p) if self.min_p > 0.0 else -np.inf
        if self.top_p < 1.0:
            for width in (4.0, 16.0, 64.0):
                t = max(top - width, floor)
                near = np.flatnonzero(x >= t)
                if t == floor or e[near].sum() >= self.top_p * mass:
                    return near, mass
        return np.flatnonzero(finite & (x >= floor)), mass
