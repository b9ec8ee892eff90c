"""What a rule measures, computed from a trace. Every function returns ``None`` when the trace
does not hold the measurement (so the rule fails as "not measured", never passes)."""

from __future__ import annotations

from collections import defaultdict
from fnmatch import fnmatchcase

import numpy as np

from trueno.trace import schema
from trueno.trace.stats import compute_times, critical_path, percentile, self_times

TRANSFER_NAMES = ("to_device", "to_host", "h2d", "d2h", "memcpy_h2d", "memcpy_d2h")


def run_values(trace: dict, key: str) -> list | None:
    values = [r.get(key) for r in trace["runs"]]
    if not values or any(v is None for v in values):
        return None
    return values


def mapped_bytes(trace: dict) -> list[int] | None:
    """Bytes mapped by mmap + brk growth per run (strace's per-call output), or None."""
    values = run_values(trace, "syscalls")
    if values is None:
        return None
    mapped = [(v.get("mapped_bytes") or {}).get("total") for v in values]
    return None if any(x is None for x in mapped) else mapped


def reduce(values: list, stat: str) -> float:
    return float({"max": np.max, "min": np.min, "median": np.median, "mean": np.mean}[stat](values))


def spans_measured(trace: dict) -> bool:
    """Spans exist as a measurement: some traced process wrote its part."""
    runs = trace["runs"]
    return bool(runs) and all(r.get("dropped") is not None for r in runs)


def complete(trace: dict) -> bool:
    return spans_measured(trace) and all(r.get("dropped") == 0 for r in trace["runs"])


def counted(s: dict) -> str | None:
    """The category a span count without one matches for ``s``: its own, except JIT spans
    (numba's import, kernel loads and compiles: start-up work, counted only when asked for
    with ``category = "jit"``)."""
    category = s.get("category")
    return None if category == "jit" else category


def matching(trace: dict, pattern: str, category: str | None = "op") -> list[dict]:
    return [
        s
        for s in trace["spans"]
        if fnmatchcase(s["name"], pattern) and (category is None or s.get("category") == category)
    ]


def per_run(trace: dict) -> list[list[dict]]:
    return [schema.spans_of_run(trace, i) for i in range(max(1, len(trace["runs"])))]


def op_durations(trace: dict, spans: list[dict]) -> list[int]:
    """The compute time of ``spans`` (JIT spans inside them taken out: start-up, not the op)."""
    compute = compute_times(trace["spans"])
    return [compute[s["id"]] for s in spans]


def op_stat(durs: list[int], stat: str) -> float | None:
    if not durs:
        return None
    if stat == "total":
        return float(sum(durs))
    if stat == "mean":
        return float(np.mean(durs))
    if stat == "max":
        return float(max(durs))
    return percentile(durs, float(stat[1:]))


def critical_path_ns(trace: dict) -> list[int]:
    """Per run, the critical thread's compute time (its JIT start-up left out)."""
    return [critical_path(spans)["compute_ns"] for spans in per_run(trace)]


def dominant_share(trace: dict) -> tuple[str, float] | None:
    """(op, share) of the op name holding the largest part of the critical path's self time."""
    best = None
    for spans in per_run(trace):
        cp = critical_path(spans)
        ops = {s["name"] for s in spans if s.get("category") == "op"}
        total = cp["busy_ns"]
        for name, ns in cp["by_name"].items():
            if name in ops and total:
                share = ns / total
                if best is None or share > best[1]:
                    best = (name, share)
    return best


def transfers(trace: dict) -> list[dict]:
    return [
        s for s in trace["spans"] if s.get("category") == "transfer" or s["name"] in TRANSFER_NAMES
    ]


def gpu_ops(trace: dict) -> list[dict]:
    return [
        s
        for s in trace["spans"]
        if s.get("category") == "op" and s.get("backend", "").startswith("cupy")
    ]


def tight_loops(trace: dict, max_op_ns: float, min_repeats: int) -> list[tuple[str, int]]:
    """Runs of >= ``min_repeats`` consecutive calls of one tiny op on one thread under one
    parent (Python-level loops that should be one vectorized call)."""
    found = []
    streams = defaultdict(list)
    for s in trace["spans"]:
        if s.get("category") == "op":
            streams[(s.get("run", 0), s.get("pid", 0), s["thread"], s.get("parent"))].append(s)
    for stream in streams.values():
        name, length = None, 0
        for s in stream + [None]:
            tiny = s is not None and s["dur_ns"] < max_op_ns
            if tiny and s["name"] == name:
                length += 1
                continue
            if name is not None and length >= min_repeats:
                found.append((name, length))
            name, length = (s["name"], 1) if tiny else (None, 0)
    return found


def hot_allocs(trace: dict) -> dict[tuple[str, str], int] | None:
    """(parent name, alloc name) -> allocations per parent name; None without alloc spans."""
    allocs = [s for s in trace["spans"] if s.get("category") == "alloc"]
    if not allocs:
        return None
    names = {s["id"]: s["name"] for s in trace["spans"]}
    runs = max(1, len(trace["runs"]))
    counts: dict = defaultdict(int)
    for s in allocs:
        counts[(names.get(s.get("parent"), "<root>"), s["name"])] += 1
    return {k: v // runs for k, v in counts.items()}


def throughput(trace: dict, spans: list[dict]) -> tuple[float | None, float | None]:
    total = sum(op_durations(trace, spans))
    if not total:
        return None, None
    nbytes = sum(s.get("bytes", 0) for s in spans)
    flops = sum(s.get("flops", 0) for s in spans)
    return (nbytes / total if nbytes else None), (flops / total if flops else None)


def shape_elements(s: dict) -> int:
    return int(np.prod(s["shape"])) if s.get("shape") else 0


def self_by_name(spans: list[dict]) -> dict[str, int]:
    selfs = self_times(spans)
    out: dict[str, int] = defaultdict(int)
    for s in spans:
        out[s["name"]] += selfs[s["id"]]
    return dict(out)
