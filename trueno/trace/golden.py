"""Golden traces: a small, committed digest of an example's trace.

A golden holds the op sequence of the main thread (run-length encoded), span counts per name
over all threads (JIT spans excepted), per-run self time per name, the run wall times, peak RSS and
total syscalls, plus the fingerprint.
Checking compares sequence and counts exactly and timings with a generous factor (timings only
when the fingerprint matches: like with like).
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from pathlib import Path

import numpy as np

from trueno.errors import ConfigError
from trueno.trace import schema
from trueno.trace.metrics import self_by_name

SCHEMA = "trueno.golden"
VERSION = 1


def op_sequence(spans: list[dict]) -> list[list]:
    """Run-length encoded op names of the first process's main thread: [[name, n], ...].
    Spans merged from dask workers (labelled ``worker``) are left out: which worker runs which
    task is the scheduler's choice, so only their counts are compared."""
    spans = [s for s in spans if not s.get("worker")]
    if not spans:
        return []
    first = min(spans, key=lambda s: s["start_ns"])
    key = (first.get("pid", 0), first["thread"])
    seq: list[list] = []
    for s in spans:
        if s.get("category") == "op" and (s.get("pid", 0), s["thread"]) == key:
            if seq and seq[-1][0] == s["name"]:
                seq[-1][1] += 1
            else:
                seq.append([s["name"], 1])
    return seq


def digest(trace: dict) -> dict:
    runs = [schema.spans_of_run(trace, i) for i in range(len(trace["runs"]) or 1)]
    selfs = [self_by_name(spans) for spans in runs]
    names = sorted({n for s in selfs for n in s})
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "name": trace.get("name", ""),
        "command": trace.get("command", []),
        "fingerprint": trace.get("fingerprint", {}),
        "sequence": op_sequence(runs[0]),
        # JIT spans (numba import, cache load or compile) are left out: whether a kernel is
        # compiled or loaded depends on numba's on-disk cache, not on the program
        "counts": dict(
            sorted(Counter(s["name"] for s in runs[0] if s.get("category") != "jit").items())
        ),
        "backends": dict(
            sorted(
                Counter(
                    f"{s['name']}:{s['backend']}" for s in runs[0] if s.get("category") == "op"
                ).items()
            )
        ),
        "self_ns": {n: [s.get(n, 0) for s in selfs] for n in names},
        "wall_ns": [r.get("wall_ns") for r in trace["runs"]],
        "max_rss_bytes": [r.get("max_rss_bytes") for r in trace["runs"]],
        # total syscalls per run (None without strace): renacer.toml's [regression]
        "syscalls": [(r.get("syscalls") or {}).get("total") for r in trace["runs"]],
    }


def load(path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"golden {path} does not exist") from None
    if data.get("schema") != SCHEMA or data.get("version") != VERSION:
        raise ConfigError(f"{path}: not a {SCHEMA} v{VERSION} file")
    return data


def render(gold: dict) -> str:
    return json.dumps(gold, indent=1, sort_keys=True) + "\n"


def structure_lines(gold: dict) -> list[str]:
    lines = [f"seq {name} x{n}" for name, n in gold["sequence"]]
    lines += [f"count {name} {n}" for name, n in gold["counts"].items()]
    return lines


def diff(old: dict, new: dict) -> str:
    """A unified diff of the structure (sequence and counts) of two goldens."""
    return "".join(
        difflib.unified_diff(
            [x + "\n" for x in structure_lines(old)],
            [x + "\n" for x in structure_lines(new)],
            "golden",
            "current",
        )
    )


def compare(gold: dict, trace: dict, timing_factor: float = 10.0, slack_ns: float = 250e6) -> dict:
    """Structure exactly, timings with generous budgets: fail when the current median self
    time of an op exceeds ``timing_factor`` x the slowest golden run plus ``slack_ns``, or the
    median wall time exceeds the factor x the slowest golden wall plus 12 x ``slack_ns`` (a
    2-core machine shared with other jobs shows 100x outliers on single ms-scale calls)."""
    cur = digest(trace)
    problems, notes = [], []
    gold_fp = gold.get("fingerprint", {})
    if not schema.same_devices(gold_fp, cur["fingerprint"]):
        # like with like: with a GPU, device copies and cupy ops join the op sequence
        notes.append(
            f"structure not compared: golden GPUs {gold_fp.get('gpus') or 'none'}, "
            f"here {cur['fingerprint'].get('gpus') or 'none'} (re-capture here)"
        )
    elif cur["sequence"] != gold["sequence"] or cur["counts"] != gold["counts"]:
        problems.append("op structure differs:\n" + diff(gold, cur))
    comparable = schema.same_machine(gold.get("fingerprint", {}), cur["fingerprint"])
    timings = []
    if comparable:
        for name, base in gold["self_ns"].items():
            now = cur["self_ns"].get(name)
            if not now:
                continue
            b, c = float(np.max(base)), float(np.median(now))
            timings.append((name, b, c))
            if c > timing_factor * b + slack_ns:
                problems.append(
                    f"{name}: median self time {c / 1e6:.2f} ms > {timing_factor}x "
                    f"golden max {b / 1e6:.2f} ms + {slack_ns / 1e6:.0f} ms"
                )
        walls = [w for w in gold.get("wall_ns", []) if w]
        now_walls = [w for w in cur["wall_ns"] if w]
        if walls and now_walls:
            b, c = float(np.max(walls)), float(np.median(now_walls))
            if c > timing_factor * b + 12 * slack_ns:
                problems.append(
                    f"wall {c / 1e6:.0f} ms > {timing_factor}x golden max "
                    f"{b / 1e6:.0f} ms + {12 * slack_ns / 1e6:.0f} ms"
                )
    return {
        "ok": not problems,
        "problems": problems,
        "timings_compared": comparable,
        "timings": timings,
        "notes": notes,
    }


def summary_text(gold: dict, trace: dict) -> str:
    from trueno.trace.summary import format_ops, format_syscalls, summarize

    head = f"# golden trace: {gold['name']}\n# command: {' '.join(gold['command'])}\n"
    return (
        head
        + format_ops(summarize(schema.spans_of_run(trace, 0)))
        + "\n\n"
        + format_syscalls(trace["runs"][0].get("syscalls"))
        + "\n"
    )
