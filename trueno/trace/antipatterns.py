"""Anti-pattern rules: PCIe bottleneck, tiny GPU ops, tight loops of tiny ops, allocation in
a hot loop, one op dominating the critical path. Same signature as every rule evaluator:
``(trace, rule, kind, label, base) -> Result``."""

from __future__ import annotations

from trueno.trace import metrics as m
from trueno.trace.result import FAIL, NOT_MEASURED, PASS, Result, check_limits


def pcie_bottleneck(trace, rule, kind, label, base):
    if not m.spans_measured(trace):
        return Result(kind, label, NOT_MEASURED, message="no spans recorded")
    kernel = sum(s["dur_ns"] for s in m.gpu_ops(trace))
    moved = sum(s["dur_ns"] for s in m.transfers(trace))
    if not kernel:
        if moved:
            return Result(
                kind,
                label,
                FAIL,
                float("inf"),
                rule["max_ratio"],
                "transfers without any GPU kernel time",
            )
        return Result(kind, label, PASS, 0.0, rule["max_ratio"], "no GPU work in this trace")
    return check_limits(kind, label, moved / kernel, None, rule["max_ratio"])


def tiny_gpu(trace, rule, kind, label, base):
    if not m.spans_measured(trace):
        return Result(kind, label, NOT_MEASURED, message="no spans recorded")
    tiny = [s for s in m.gpu_ops(trace) if s["bytes"] < rule["max_bytes"]]
    return check_limits(kind, label, len(tiny), None, rule.get("max_count", 0))


def tight_loop(trace, rule, kind, label, base):
    if not m.spans_measured(trace):
        return Result(kind, label, NOT_MEASURED, message="no spans recorded")
    loops = m.tight_loops(trace, rule["max_op_us"] * 1e3, int(rule["min_repeats"]))
    if loops:
        worst = max(loops, key=lambda x: x[1])
        return Result(
            kind,
            label,
            FAIL,
            len(loops),
            rule["min_repeats"],
            f"{len(loops)} loops of tiny ops, longest {worst[1]}x {worst[0]}",
        )
    return Result(kind, label, PASS, 0, rule["min_repeats"], "no tight loops of tiny ops")


def alloc(trace, rule, kind, label, base):
    counts = m.hot_allocs(trace)
    if counts is None:
        return Result(
            kind,
            label,
            NOT_MEASURED,
            message="no allocation spans (category 'alloc') in this trace",
        )
    (where, what), worst = max(counts.items(), key=lambda kv: kv[1])
    res = check_limits(kind, label, worst, None, rule["max_per_parent"])
    res.message += f" ({what} under {where})"
    return res


def dominant(trace, rule, kind, label, base):
    found = m.dominant_share(trace) if m.spans_measured(trace) else None
    if found is None:
        return Result(kind, label, NOT_MEASURED, message="no op spans on the critical path")
    res = check_limits(kind, label, found[1], None, rule["max_fraction"])
    res.message = f"{found[0]}: {res.message}"
    return res
