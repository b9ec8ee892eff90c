"""Statistics: Mann-Whitney U against hand-computed values, self time, critical path."""

from __future__ import annotations

import math

import numpy as np
from tracefx import span

from trueno.trace.stats import critical_path, mann_whitney, percentile, self_times


def test_mann_whitney_u_and_p_match_hand_computation():
    a, b = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]
    u, p = mann_whitney(a, b)
    assert u == 0.0  # every a below every b
    # normal approximation: mu=12.5, sigma=sqrt(25*11/12), continuity 0.5
    z = (12.5 - 0.5) / math.sqrt(25 * 11 / 12)
    assert math.isclose(p, math.erfc(z / math.sqrt(2)), rel_tol=1e-12)
    assert p < 0.02


def test_mann_whitney_ties_and_identical_samples():
    u, p = mann_whitney([3, 3, 3], [3, 3, 3])
    assert p == 1.0
    u, p = mann_whitney([1, 2, 2, 3], [2, 3, 3, 4])
    # ranks 1, 3, 3, 6 (ties averaged) -> U = 13 - 10
    assert 0.0 < p < 1.0 and u == 3.0


def test_mann_whitney_detects_shift_not_noise():
    rng = np.random.default_rng(0)
    base = rng.normal(100, 5, 30)
    assert mann_whitney(base, rng.normal(100, 5, 30))[1] > 0.01
    assert mann_whitney(base, rng.normal(130, 5, 30))[1] < 1e-6


def test_self_time_and_critical_path():
    spans = [
        span(1, "root", 0, 100, category="region"),
        span(2, "a", 10, 30, parent=1),
        span(3, "b", 50, 40, parent=1),
        span(4, "t2", 0, 60, thread=2),
    ]
    assert self_times(spans) == {1: 30, 2: 30, 3: 40, 4: 60}
    cp = critical_path(spans)
    assert cp["thread"] == 1 and cp["busy_ns"] == cp["compute_ns"] == 100
    assert cp["by_name"] == {"root": 30, "a": 30, "b": 40}
    assert percentile([1, 2, 3, 4], 50) == 2.5


def test_critical_path_leaves_out_jit_start_up():
    """numba's import inside the first op (a JIT child span) is start-up, not compute."""
    spans = [
        span(1, "softmax", 0, 100),
        span(2, "numba.import", 5, 80, parent=1, category="jit"),
        span(3, "exp", 120, 30),
        span(4, "t2", 0, 60, thread=2),
    ]
    cp = critical_path(spans)
    assert cp["thread"] == 1 and cp["busy_ns"] == 130 and cp["compute_ns"] == 130 - 80
    jit_free = [s for s in spans if s["id"] != 2]
    assert critical_path(jit_free)["compute_ns"] == 130
