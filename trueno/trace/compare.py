"""Regression verdicts between two traces with repeated runs.

Per op name the samples are the per-run total self times when both traces hold at least
``MIN_RUNS`` runs, else the per-call durations. A change is a regression only when the
Mann-Whitney U test is significant (p < alpha) AND the median grew by more than
``min_effect`` (relative) and ``min_abs_ns``; an improvement is never a failure.
"""

from __future__ import annotations

import json

import numpy as np

from trueno.trace import schema
from trueno.trace.metrics import self_by_name
from trueno.trace.stats import mann_whitney

MIN_RUNS = 3
REGRESSION, IMPROVEMENT, SAME = "regression", "improvement", "no change"


def _samples(trace: dict, per_run: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    if per_run:
        for i in range(len(trace["runs"])):
            for name, ns in self_by_name(schema.spans_of_run(trace, i)).items():
                out.setdefault(name, []).append(float(ns))
        walls = [r["wall_ns"] for r in trace["runs"] if r.get("wall_ns")]
        if walls:
            out["<wall>"] = [float(w) for w in walls]
    else:
        for s in trace["spans"]:
            out.setdefault(s["name"], []).append(float(s["dur_ns"]))
    return out


def compare(
    base: dict, cur: dict, alpha: float = 0.01, min_effect: float = 0.10, min_abs_ns: float = 1000.0
) -> dict:
    per_run = len(base["runs"]) >= MIN_RUNS and len(cur["runs"]) >= MIN_RUNS
    a, b = _samples(base, per_run), _samples(cur, per_run)
    rows = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            rows.append(
                {"op": name, "verdict": "only in " + ("current" if name in b else "baseline")}
            )
            continue
        ma, mb = float(np.median(a[name])), float(np.median(b[name]))
        _, p = mann_whitney(a[name], b[name])
        ratio = mb / ma if ma else float("inf")
        verdict = SAME
        if p < alpha and abs(mb - ma) > min_abs_ns:
            if ratio > 1 + min_effect:
                verdict = REGRESSION
            elif ratio < 1 - min_effect:
                verdict = IMPROVEMENT
        rows.append(
            {
                "op": name,
                "base_median_ns": ma,
                "cur_median_ns": mb,
                "ratio": ratio,
                "p_value": p,
                "n_base": len(a[name]),
                "n_cur": len(b[name]),
                "verdict": verdict,
            }
        )
    return {
        "samples": "per-run self time" if per_run else "per-call duration",
        "alpha": alpha,
        "min_effect": min_effect,
        "comparable": schema.same_machine(base.get("fingerprint", {}), cur.get("fingerprint", {})),
        "regressions": sum(r["verdict"] == REGRESSION for r in rows),
        "ops": rows,
    }


def markdown(report: dict) -> str:
    lines = [
        f"samples: {report['samples']}; alpha {report['alpha']}, minimum effect "
        f"{report['min_effect']:.0%}"
        + ("" if report["comparable"] else "; WARNING: different machines"),
        "",
        "| op | baseline | current | ratio | p | n | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["ops"]:
        if "ratio" not in r:
            lines.append(f"| {r['op']} | | | | | | {r['verdict']} |")
            continue
        lines.append(
            f"| {r['op']} | {r['base_median_ns'] / 1e3:.1f} us | "
            f"{r['cur_median_ns'] / 1e3:.1f} us | {r['ratio']:.2f} | "
            f"{r['p_value']:.3g} | {r['n_base']}/{r['n_cur']} | {r['verdict']} |"
        )
    lines.append("")
    lines.append(f"{report['regressions']} regression(s)")
    return "\n".join(lines) + "\n"


def to_json(report: dict) -> str:
    return json.dumps(report, indent=1) + "\n"
