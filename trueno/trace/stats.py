"""Statistics over spans: self time, compute time (JIT taken out), percentiles, critical path,
Mann-Whitney U.

Pure Python + numpy (no scipy). The Mann-Whitney test uses the normal approximation with tie
correction and a continuity correction, which is adequate from about 5 samples per side.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def percentile(values, q: float) -> float:
    if len(values) == 0:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def self_times(spans: list[dict]) -> dict[int, int]:
    """Span id -> duration minus the time of its direct children (never below 0)."""
    child = defaultdict(int)
    for s in spans:
        if s.get("parent"):
            child[s["parent"]] += s["dur_ns"]
    return {s["id"]: max(0, s["dur_ns"] - child.get(s["id"], 0)) for s in spans}


def compute_times(spans: list[dict]) -> dict[int, int]:
    """Span id -> its duration less the JIT spans (category ``jit``: numba's import, kernel
    cache loads and compiles) inside it, at any depth: what the op itself took, start-up cost
    taken out. A JIT span keeps its own duration."""
    by_id = {s["id"]: s for s in spans}
    out = {s["id"]: s["dur_ns"] for s in spans}
    for s in spans:
        if s.get("category") != "jit":
            continue
        parent = by_id.get(s.get("parent"))
        if parent is not None and parent.get("category") == "jit":
            continue  # inside an outer JIT span, which is taken out whole
        for _ in range(len(spans)):  # bounded: a malformed parent cycle cannot hang
            if parent is None:
                break
            out[parent["id"]] -= s["dur_ns"]
            parent = by_id.get(parent.get("parent"))
    return {k: max(0, v) for k, v in out.items()}


def _union_ns(intervals: list[tuple[int, int]]) -> int:
    total, end = 0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def critical_path(spans: list[dict]) -> dict:
    """The critical thread (most busy time under root spans) and its per-name self time.

    Returns ``{"thread", "busy_ns", "compute_ns", "by_name": {name: self_ns}}``; spans on one
    thread run one after another, so the critical path of a run is its busiest thread's
    traced time. ``compute_ns`` is that time less its JIT spans' (numba's import, kernel cache
    loads, compiles: category ``jit``): start-up, not compute (the wall-time and start-up
    budgets hold it; numba's import alone read 0.4-1.3 s under strace on one host).
    """
    if not spans:
        return {"thread": None, "busy_ns": 0, "compute_ns": 0, "by_name": {}}
    ids = {s["id"] for s in spans}
    roots, jit = defaultdict(list), defaultdict(list)
    for s in spans:
        key = (s.get("pid", 0), s["thread"])
        if not s.get("parent") or s["parent"] not in ids:
            roots[key].append((s["start_ns"], s["start_ns"] + s["dur_ns"]))
        if s.get("category") == "jit":
            jit[key].append((s["start_ns"], s["start_ns"] + s["dur_ns"]))
    busy = {key: _union_ns(iv) for key, iv in roots.items()}
    thread = max(busy, key=busy.get)
    selfs = self_times(spans)
    by_name = defaultdict(int)
    for s in spans:
        if (s.get("pid", 0), s["thread"]) == thread:
            by_name[s["name"]] += selfs[s["id"]]
    compute = busy[thread] - _union_ns(jit[thread])
    return {"thread": thread[1], "busy_ns": busy[thread], "compute_ns": compute,
            "by_name": dict(by_name)}  # fmt: skip


def mann_whitney(a, b) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test: (U of ``a``, p-value), normal approximation."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return float("nan"), 1.0
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    i, tie_term = 0, 0.0
    while i < len(both):  # average ranks over ties
        j = i
        while j + 1 < len(both) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    mu = n1 * n2 / 2.0
    n = n1 + n2
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return float(u1), 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    p = math.erfc(max(z, 0.0) / math.sqrt(2.0))
    return float(u1), min(1.0, p)
