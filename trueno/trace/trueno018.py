"""trueno 0.18's published ``renacer.toml`` layout, evaluated against a trueno trace.

Sections (every key is evaluated, an unknown one is a ConfigError naming it):

- ``[performance.budgets.NAME]``: ``max_time_ms`` (median wall time) and ``max_syscalls``
  (total syscalls) for the trace named NAME;
- ``[[assertions]]``: ``name``, ``check`` = syscall_percentage (``syscall``, ``max_percentage``),
  syscall_count (``syscall``, ``max_count``), total_time (``max_ms``: median wall) or min_time
  (``min_ms``: a run that did nothing fails), optional ``applies_to`` (globs over trace names;
  an assertion that does not apply is reported as skipped) and ``description``;
- ``[[anti_patterns.rules]]``: ``name``, ``check`` = ratio (``numerator``, ``denominator``:
  syscall names or "total", ``max_ratio``) or syscall_count (``syscall``, ``max_count``),
  ``severity`` = warning | error, optional ``applies_to``, ``description``;
- ``[[golden_traces.baselines]]``: ``name`` (the trace), ``path`` (a golden trace file) and
  ``max_deviation_percent`` (median wall time against the golden's median);
- ``[regression]``: ``baseline_dir`` (default golden_traces), ``time_threshold_percent`` and
  ``syscall_threshold_percent`` (increase over the golden NAME.json of this trace; golden
  files hold no syscall counts, so that one is "not measured");
- ``[ci]``: ``fail_on_budget_violation``, ``fail_on_assertion_failure``,
  ``fail_on_anti_pattern``, ``fail_on_golden_deviation``, ``fail_on_regression`` (booleans,
  default true: false reports the violation as a warning) and ``fail_on_severity`` (the
  anti-pattern severities that fail, default ["error"]);
- ``[reporting]``: ``formats`` (junit, markdown, json) and ``output_dir``.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from trueno.errors import ConfigError
from trueno.trace import metrics as m
from trueno.trace.result import NOT_MEASURED, SKIPPED, Result, check_limits

SECTIONS = (
    "performance",
    "assertions",
    "anti_patterns",
    "golden_traces",
    "regression",
    "ci",
    "reporting",
)
ASSERT_CHECKS = {
    "syscall_percentage": ("syscall", "max_percentage"),
    "syscall_count": ("syscall", "max_count"),
    "total_time": ("max_ms",),
    "min_time": ("min_ms",),
}
ANTI_CHECKS = {
    "ratio": ("numerator", "denominator", "max_ratio"),
    "syscall_count": ("syscall", "max_count"),
}
SEVERITIES = ("warning", "error")
CI_KEYS = (
    "fail_on_budget_violation",
    "fail_on_assertion_failure",
    "fail_on_anti_pattern",
    "fail_on_golden_deviation",
    "fail_on_regression",
)
FORMATS = ("junit", "markdown", "json")
NUMBERS = (
    "max_time_ms",
    "max_syscalls",
    "max_percentage",
    "max_count",
    "max_ms",
    "min_ms",
    "max_ratio",
    "max_deviation_percent",
    "time_threshold_percent",
    "syscall_threshold_percent",
)


def _keys(table, allowed, required, where):
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    extra = set(table) - set(allowed)
    if extra:
        raise ConfigError(f"{where}: unknown keys {sorted(extra)}; expected {sorted(allowed)}")
    missing = set(required) - set(table)
    if missing:
        raise ConfigError(f"{where}: missing keys {sorted(missing)}")
    for key in set(table) & set(NUMBERS):
        v = table[key]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise ConfigError(f"{where}: {key} must be a number >= 0, found {v!r}")
    globs = table.get("applies_to")
    if globs is not None and (
        not isinstance(globs, list) or not all(isinstance(g, str) for g in globs)
    ):
        raise ConfigError(f"{where}: applies_to must be a list of glob strings")


def _array(data, key, where):
    items = data.get(key, [])
    if not isinstance(items, list):
        raise ConfigError(f"{where}: {key} must be an array of tables ([[{key}]])")
    return items


def validate(data: dict, where: str = "config") -> None:
    if "performance" in data:
        _keys(data["performance"], ("budgets",), (), f"{where}: [performance]")
        budgets = data["performance"].get("budgets", {})
        _keys(budgets, list(budgets), (), f"{where}: [performance.budgets]")
        for name, b in budgets.items():
            at = f"{where}: [performance.budgets.{name}]"
            _keys(b, ("max_time_ms", "max_syscalls"), (), at)
            if not b:
                raise ConfigError(f"{at}: needs max_time_ms or max_syscalls")
    for i, a in enumerate(_array(data, "assertions", where)):
        at = f"{where}: assertions[{i}]"
        check = a.get("check") if isinstance(a, dict) else None
        if check not in ASSERT_CHECKS:
            raise ConfigError(f"{at}: check {check!r}, expected one of {sorted(ASSERT_CHECKS)}")
        need = ("name", "check", *ASSERT_CHECKS[check])
        _keys(a, (*need, "applies_to", "description"), need, f"{at} ({check})")
    if "anti_patterns" in data:
        _keys(data["anti_patterns"], ("rules",), (), f"{where}: [anti_patterns]")
        for i, r in enumerate(_array(data["anti_patterns"], "rules", f"{where}: anti_patterns")):
            at = f"{where}: anti_patterns.rules[{i}]"
            check = r.get("check") if isinstance(r, dict) else None
            if check not in ANTI_CHECKS:
                raise ConfigError(f"{at}: check {check!r}, expected one of {sorted(ANTI_CHECKS)}")
            need = ("name", "check", "severity", *ANTI_CHECKS[check])
            _keys(r, (*need, "applies_to", "description"), need, f"{at} ({check})")
            if r["severity"] not in SEVERITIES:
                raise ConfigError(f"{at}: severity {r['severity']!r}, expected {list(SEVERITIES)}")
    if "golden_traces" in data:
        _keys(data["golden_traces"], ("baselines",), (), f"{where}: [golden_traces]")
        for i, b in enumerate(_array(data["golden_traces"], "baselines", where)):
            need = ("name", "path", "max_deviation_percent")
            _keys(b, need, need, f"{where}: golden_traces.baselines[{i}]")
    if "regression" in data:
        allowed = ("baseline_dir", "time_threshold_percent", "syscall_threshold_percent")
        _keys(data["regression"], allowed, (), f"{where}: [regression]")
        if not set(data["regression"]) - {"baseline_dir"}:
            raise ConfigError(f"{where}: [regression]: needs a time or syscall threshold")
    if "ci" in data:
        _keys(data["ci"], (*CI_KEYS, "fail_on_severity"), (), f"{where}: [ci]")
        for key in CI_KEYS:
            if key in data["ci"] and not isinstance(data["ci"][key], bool):
                raise ConfigError(f"{where}: [ci] {key} must be true or false")
        sev = data["ci"].get("fail_on_severity", ["error"])
        if not isinstance(sev, list) or not set(sev) <= set(SEVERITIES):
            raise ConfigError(
                f"{where}: [ci] fail_on_severity {sev!r}: expected a list of {list(SEVERITIES)}"
            )
    if "reporting" in data:
        _keys(data["reporting"], ("formats", "output_dir"), (), f"{where}: [reporting]")
        formats = data["reporting"].get("formats", [])
        if not isinstance(formats, list) or not set(formats) <= set(FORMATS):
            raise ConfigError(
                f"{where}: [reporting] formats {formats!r}: expected a list of {list(FORMATS)}"
            )
        if not isinstance(data["reporting"].get("output_dir", ""), str):
            raise ConfigError(f"{where}: [reporting] output_dir must be a string")


def applies(data: dict) -> bool:
    return any(key in data for key in SECTIONS[:-1])


def _wall(trace):
    values = m.run_values(trace, "wall_ns")
    return None if values is None else float(np.median(values))


def _calls(trace, name):
    values = m.run_values(trace, "syscalls")
    sc = values[0] if values else None
    if sc is None:
        return None
    if name == "total":
        return sc.get("total")
    if name in sc["calls"]:
        return sc["calls"][name]["calls"]
    return 0 if sc.get("source") == "strace" else None  # strace counts every call


def _skipped(kind, label, globs, target):
    if globs is None or any(fnmatchcase(target or "", g) for g in globs):
        return None
    return Result(kind, label, SKIPPED, message=f"applies_to {globs} does not match {target!r}")


def _deviation(kind, label, cur, base, limit, what):
    if cur is None or not base:
        return Result(kind, label, NOT_MEASURED, message=f"{what} not measured on both sides")
    res = check_limits(kind, label, 100.0 * (cur - base) / base, None, limit, "%")
    res.message = f"{what} {cur / 1e6:.1f} ms vs baseline {base / 1e6:.1f} ms: {res.message}"
    return res


def _golden_wall(path):
    try:
        gold = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return float(np.median(gold["wall_ns"])) if gold.get("wall_ns") else None


def evaluate(trace: dict, data: dict, target: str | None, base: str = ".") -> list[Result]:
    ci = data.get("ci", {})
    out = []

    def add(res, group):
        out.append(res if ci.get(group, True) else res.soften())

    for name, b in data.get("performance", {}).get("budgets", {}).items():
        if name != target:
            continue
        kind = "performance.budget"
        if "max_time_ms" in b:
            res = check_limits(
                kind, f"{name}.max_time_ms", _wall(trace), None, b["max_time_ms"], "ms", 1e6
            )
            add(res, "fail_on_budget_violation")
        if "max_syscalls" in b:
            res = check_limits(
                kind, f"{name}.max_syscalls", _calls(trace, "total"), None, b["max_syscalls"]
            )
            add(res, "fail_on_budget_violation")
    for a in data.get("assertions", []):
        kind, label = f"assertions.{a['check']}", a["name"]
        res = _skipped(kind, label, a.get("applies_to"), target)
        if res is None:
            res = _assertion(trace, a, kind, label)
        add(res, "fail_on_assertion_failure")
    fail_sev = ci.get("fail_on_severity", ["error"])
    for r in data.get("anti_patterns", {}).get("rules", []):
        kind, label = f"anti_patterns.{r['check']}", r["name"]
        res = _skipped(kind, label, r.get("applies_to"), target)
        if res is None:
            res = _anti(trace, r, kind, label)
            res.message = f"[{r['severity']}] {res.message}"
            if r["severity"] not in fail_sev:
                res.soften()
        add(res, "fail_on_anti_pattern")
    for b in data.get("golden_traces", {}).get("baselines", []):
        if b["name"] != target:
            continue
        path = Path(base, b["path"])
        res = _deviation(
            "golden_traces.baseline",
            f"golden {b['name']}",
            _wall(trace),
            _golden_wall(path),
            b["max_deviation_percent"],
            "median wall",
        )
        add(res, "fail_on_golden_deviation")
    reg = data.get("regression")
    if reg is not None:
        path = Path(base, reg.get("baseline_dir", "golden_traces"), f"{target}.json")
        if "time_threshold_percent" in reg:
            res = _deviation(
                "regression.time",
                "regression time",
                _wall(trace),
                _golden_wall(path),
                reg["time_threshold_percent"],
                "median wall",
            )
            add(res, "fail_on_regression")
        if "syscall_threshold_percent" in reg:
            res = Result(
                "regression.syscalls",
                "regression syscalls",
                NOT_MEASURED,
                limit={"max": reg["syscall_threshold_percent"]},
                message=f"the baseline {path} holds no syscall counts (golden traces record "
                "ops, wall and RSS)",
            )
            add(res, "fail_on_regression")
    return out


def _assertion(trace, a, kind, label):
    check = a["check"]
    if check == "total_time":
        return check_limits(kind, label, _wall(trace), None, a["max_ms"], "ms", 1e6)
    if check == "min_time":
        return check_limits(kind, label, _wall(trace), a["min_ms"], None, "ms", 1e6)
    calls = _calls(trace, a["syscall"])
    if check == "syscall_count":
        return check_limits(kind, label, calls, None, a["max_count"])
    total = _calls(trace, "total")
    if calls is None or not total:
        return Result(kind, label, NOT_MEASURED, message="no complete syscall counts (strace)")
    return check_limits(kind, label, 100.0 * calls / total, None, a["max_percentage"], "%")


def _anti(trace, r, kind, label):
    if r["check"] == "syscall_count":
        return check_limits(kind, label, _calls(trace, r["syscall"]), None, r["max_count"])
    num, den = _calls(trace, r["numerator"]), _calls(trace, r["denominator"])
    if num is None or den is None:
        return Result(kind, label, NOT_MEASURED, message="syscall counts not measured")
    if not den:
        return Result(
            kind, label, NOT_MEASURED, message=f"no {r['denominator']} calls to divide by"
        )
    return check_limits(kind, label, num / den, None, r["max_ratio"])


def reporting(data: dict) -> dict:
    return data.get("reporting", {})
