"""Sampler: greedy, filters, penalties, seeded reproducibility, composable processors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trueno.llm.sampler import PresencePenalty, RepetitionPenalty, Sampler, softmax

LOGITS = np.array([1.0, 3.0, 2.5, -1.0, 0.0, 2.9], dtype=np.float32)


def test_greedy_is_argmax():
    assert Sampler(temperature=0).sample(LOGITS) == 1


def test_top_k_one_is_greedy_at_any_temperature():
    s = Sampler(temperature=5.0, top_k=1, seed=3)
    assert {s.sample(LOGITS) for _ in range(50)} == {1}


def test_candidates_top_k_top_p_min_p():
    ids, _ = Sampler(top_k=3, top_p=1.0, min_p=0.0).candidates(LOGITS)
    assert ids.tolist() == [1, 5, 2]
    p = softmax(np.sort(LOGITS.astype(np.float64))[::-1])
    ids, _ = Sampler(top_k=0, top_p=float(p[0] + p[1]) - 1e-9, min_p=0.0).candidates(LOGITS)
    assert ids.tolist() == [1, 5]  # the smallest set whose mass reaches top_p
    ids, _ = Sampler(top_k=0, top_p=1.0, min_p=0.5).candidates(LOGITS)
    keep = np.flatnonzero(softmax(LOGITS.astype(np.float64)) >= 0.5 * softmax(LOGITS).max())
    assert sorted(ids.tolist()) == sorted(keep.tolist())


def test_seeded_runs_repeat_and_seeds_differ():
    logits = np.random.default_rng(0).standard_normal(1000).astype(np.float32)

    def draw(seed):
        s = Sampler(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=seed)
        return [s.sample(logits) for _ in range(40)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_frequencies_follow_softmax_with_temperature():
    logits = np.array([0.0, 1.0, 2.0, 0.5], dtype=np.float32)
    s = Sampler(temperature=0.7, top_k=0, top_p=1.0, min_p=0.0, seed=1)
    n = 20000
    counts = np.bincount([s.sample(logits) for _ in range(n)], minlength=4)
    expected = softmax(logits.astype(np.float64) / 0.7)
    np.testing.assert_allclose(counts / n, expected, atol=0.015)


def test_repetition_penalty_divides_positive_multiplies_negative():
    x = np.array([2.0, -2.0, 1.0, 4.0], dtype=np.float32)
    out = RepetitionPenalty(2.0, last_n=2)(x.copy(), [2, 0, 1])  # only the last 2: ids 0, 1
    np.testing.assert_array_equal(out, [1.0, -4.0, 1.0, 4.0])


def test_presence_and_frequency_penalty():
    x = np.zeros(4, dtype=np.float32)
    out = PresencePenalty(presence=0.5, frequency=0.25)(x, [3, 3, 1])
    np.testing.assert_allclose(out, [0.0, -0.75, 0.0, -1.0])


def test_penalty_changes_greedy_choice():
    s = Sampler(temperature=0, repeat_penalty=10.0)
    assert s.sample(LOGITS, history=[1]) == 5


def test_custom_processors_compose_in_order():
    def ban(token):
        def proc(logits, history):
            logits[token] = -np.inf
            return logits

        return proc

    s = Sampler(temperature=0, processors=[ban(1), ban(5)])
    assert s.sample(LOGITS) == 2
    assert LOGITS[1] == 3.0  # the caller's logits are not modified


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="top_p"):
        Sampler(top_p=0.0)
    with pytest.raises(ValueError, match="min_p"):
        Sampler(min_p=1.5)


@settings(max_examples=60, deadline=None)
@given(
    logits=arrays(
        np.float32, st.integers(2, 200), elements=st.floats(-20, 20, allow_nan=False, width=32)
    ),
    top_k=st.integers(0, 50),
    top_p=st.floats(0.05, 1.0),
    min_p=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**32 - 1),
)
def test_sampled_token_is_a_sorted_candidate_and_includes_the_best(
    logits, top_k, top_p, min_p, seed
):
    s = Sampler(temperature=0.9, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed)
    ids, v = s.candidates(logits)
    assert len(ids) >= 1
    assert logits[ids[0]] == logits.max()
    assert np.all(np.diff(v) <= 0)
    if top_k:
        assert len(ids) <= top_k
    assert s.sample(logits) in set(ids.tolist())


@settings(max_examples=60, deadline=None)
@given(
    logits=arrays(
        np.float32, st.integers(2, 3000), elements=st.floats(-100, 100, allow_nan=False, width=32)
    ),
    k=st.integers(1, 60),
)
def test_top_k_ids_are_the_k_largest(logits, k):
    from trueno.llm.sampler import _top_k_ids

    k = min(k, logits.size - 1)
    got = np.sort(logits[_top_k_ids(logits, k)])
    assert got.size == k
    np.testing.assert_array_equal(got, np.sort(logits)[-k:])


@settings(max_examples=60, deadline=None)
@given(
    logits=arrays(
        np.float32, st.integers(2, 500), elements=st.floats(-30, 30, allow_nan=False, width=32)
    ),
    top_p=st.floats(0.05, 1.0),
    min_p=st.floats(0.0, 0.5),
)
def test_candidates_without_top_k_match_a_full_sort(logits, top_p, min_p):
    s = Sampler(temperature=1.0, top_k=0, top_p=top_p, min_p=min_p)
    ids, _ = s.candidates(logits)
    # the spec: sort everything, keep the top-p prefix, then drop p < min_p * p_max
    order = np.argsort(-logits.astype(np.float64), kind="stable")
    p = softmax(logits[order].astype(np.float64))
    assume(np.abs(np.cumsum(p) - top_p).min() > 1e-9)  # no cut decided by rounding
    keep = len(order) if top_p >= 1.0 else int(np.searchsorted(np.cumsum(p), top_p)) + 1
    ref = order[:keep]
    if min_p > 0:
        ref = ref[: max(1, int(np.count_nonzero(p[:keep] >= min_p * p[0])))]
    assert sorted(ids.tolist()) == sorted(ref.tolist())
