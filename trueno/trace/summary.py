"""Per-op tables: calls, total, self, mean, p50/p95/p99, GB/s, GFLOP/s, backend; and the
strace-style syscall table. Rows are plain dicts; ``format_*`` render them as text."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from trueno.trace.stats import compute_times, self_times


def summarize(spans: list[dict]) -> list[dict]:
    """One row per span name, sorted by total self time (largest first). Totals, means,
    percentiles and rates are of compute time: the JIT spans inside a call (numba's start-up
    work) are taken out, and have rows of their own."""
    selfs = self_times(spans)
    compute = compute_times(spans)
    groups: dict[str, list[dict]] = defaultdict(list)
    for s in spans:
        groups[s["name"]].append(s)
    rows = []
    for name, group in groups.items():
        durs = np.array([compute[s["id"]] for s in group], dtype=np.float64)
        total = float(durs.sum())
        nbytes = sum(s.get("bytes", 0) for s in group)
        flops = sum(s.get("flops", 0) for s in group)
        backends = sorted({s.get("backend") or "-" for s in group})
        p50, p95, p99 = np.percentile(durs, [50, 95, 99])
        rows.append(
            {
                "name": name,
                "category": group[0].get("category", ""),
                "calls": len(group),
                "total_ns": int(total),
                "self_ns": int(sum(selfs[s["id"]] for s in group)),
                "mean_ns": total / len(group),
                "p50_ns": float(p50),
                "p95_ns": float(p95),
                "p99_ns": float(p99),
                "max_ns": float(durs.max()),
                "bytes": int(nbytes),
                "flops": int(flops),
                "gbps": nbytes / total if total and nbytes else None,  # bytes/ns == GB/s
                "gflops": flops / total if total and flops else None,
                "backend": ",".join(backends),
            }
        )
    rows.sort(key=lambda r: (-r["self_ns"], r["name"]))
    return rows


def jit_line(rows: list[dict]) -> str | None:
    """One line for the JIT spans' time (numba's import, kernel cache loads, compiles):
    start-up cost, shown apart from the ops' compute. None when there is none."""
    jit = [r for r in rows if r["category"] == "jit"]
    if not jit:
        return None
    total = sum(r["total_ns"] for r in jit)
    parts = ", ".join(f"{r['name']} {r['calls']}x {_t(r['total_ns'])}" for r in jit)
    return f"jit (start-up, not compute): {_t(total)}: {parts}"


def by_process(spans: list[dict]) -> list[dict]:
    """Rows of :func:`summarize` per process of a merged trace (a dask cluster's client and
    workers: spans labelled ``process``), each with a ``process`` key."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for s in spans:
        groups[s.get("process") or "local"].append(s)
    rows = []
    for proc in sorted(groups):
        for r in summarize(groups[proc]):
            rows.append({"process": proc, **r})
    return rows


def format_processes(rows: list[dict], limit: int | None = None) -> str:
    """One table per process (rows from :func:`by_process`)."""
    out, seen = [], []
    for r in rows:
        if r["process"] not in seen:
            seen.append(r["process"])
    for proc in seen:
        mine = [r for r in rows if r["process"] == proc]
        out.append(f"{proc}:\n{format_ops(mine, limit)}")
    return "\n\n".join(out)


def _t(ns: float) -> str:
    if ns != ns:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f}{unit}"
    return f"{ns:.0f}ns"


def _f(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_ops(rows: list[dict], limit: int | None = None) -> str:
    head = (
        "op",
        "calls",
        "total",
        "self",
        "mean",
        "p50",
        "p95",
        "p99",
        "GB/s",
        "GFLOP/s",
        "backend",
    )
    body = [
        (
            r["name"],
            str(r["calls"]),
            _t(r["total_ns"]),
            _t(r["self_ns"]),
            _t(r["mean_ns"]),
            _t(r["p50_ns"]),
            _t(r["p95_ns"]),
            _t(r["p99_ns"]),
            _f(r["gbps"]),
            _f(r["gflops"]),
            r["backend"],
        )
        for r in rows[:limit]
    ]
    return _table(head, body)


def format_syscalls(syscalls: dict | None, limit: int | None = 20) -> str:
    """strace -c style: % time, seconds, usecs/call, calls, errors, syscall."""
    if not syscalls or not syscalls.get("calls"):
        return "syscalls: not measured"
    calls = syscalls["calls"]
    total_s = sum(c.get("seconds") or 0.0 for c in calls.values())
    head = ("% time", "seconds", "usecs/call", "calls", "errors", "syscall")
    body = []
    for name, c in sorted(
        calls.items(), key=lambda kv: (-(kv[1].get("seconds") or 0), -kv[1]["calls"])
    ):
        sec = c.get("seconds")
        pct = f"{100 * sec / total_s:.2f}" if sec is not None and total_s else "-"
        per = f"{1e6 * sec / c['calls']:.0f}" if sec is not None and c["calls"] else "-"
        body.append(
            (
                pct,
                "-" if sec is None else f"{sec:.6f}",
                per,
                str(c["calls"]),
                str(c.get("errors") or ""),
                name,
            )
        )
    if limit is not None and len(body) > limit:
        rest = len(body) - limit
        body = body[:limit] + [("", "", "", "", "", f"... {rest} more")]
    total_calls = sum(c["calls"] for c in calls.values())
    body.append(("100.00" if total_s else "-", f"{total_s:.6f}", "", str(total_calls), "", "total"))
    return f"syscalls (source: {syscalls.get('source')})\n" + _table(head, body, left=(5,))


def _table(head, body, left=(0,)) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    lines = [
        "  ".join(
            h.ljust(w) if i in left else h.rjust(w)
            for i, (h, w) in enumerate(zip(head, widths, strict=False))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in body:
        lines.append(
            "  ".join(
                c.ljust(w) if i in left else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=False))
            )
        )
    return "\n".join(lines)
