"""trueno 0.18's published ``renacer.toml`` layout, evaluated against a trueno trace.

The keys are those of the file trueno 0.18 ships; every key is evaluated, an unknown one (or a
value trueno cannot honour) is a ConfigError naming it:

- ``[project]``: ``name``, ``version``: shown in the reports;
- ``[performance.budgets]``: ``NAME = { max_time_ms, max_syscalls }`` per trace NAME (an
  example's script stem): median wall time and total syscalls;
- ``[[assertions]]``: ``name``, ``check`` = syscall_percentage (``syscall``,
  ``max_percentage``), syscall_count (``syscall``, ``max_count``), total_time
  (``max_time_ms``: median wall) or min_time (``min_time_ms``: a run faster than that fails);
  optional ``applies_to`` (globs over trace names; an assertion that does not apply is
  reported as skipped) and ``description``;
- ``[[anti_patterns.rules]]``: ``name``, ``check`` = ratio (``syscalls``, a list, and
  ``min_ratio``: flagged when the time strace counts in those syscalls, summed over threads,
  exceeds that share of the run's wall time) or syscall_count (``syscall``, ``max_count``);
  ``severity`` = warning | error; optional ``enabled`` (false: skipped), ``applies_to``,
  ``description``;
- ``[golden_traces]``: ``directory`` (default golden_traces: where ``[regression]`` finds
  NAME.json), ``format`` (only "trueno.golden", the digests `make golden` writes, is read);
  ``[[golden_traces.baselines]]``: ``name`` (the trace), ``file`` (a golden digest) and
  ``max_deviation_percent`` (median wall time against the golden's median);
- ``[regression]``: ``time_threshold_percent`` and ``syscall_threshold_percent`` (increase of
  median wall time / total syscalls over the golden NAME.json of this trace; a golden captured
  without syscall counts leaves the latter "not measured"), optional ``baseline_dir``;
- ``[ci]``: ``fail_on_budget_exceeded``, ``fail_on_regression`` (default true; false reports a
  violation as a warning), ``fail_on_anti_patterns`` (the severities that fail, default
  ["error"]; true = all, false = none); trueno adds ``fail_on_assertion_failure`` and
  ``fail_on_golden_deviation``;
- ``[reporting]``: ``formats`` (junit, markdown, json) and ``output_dir``;
- ``[profiling]``: ``enable_flamegraphs`` and ``flamegraph_dir`` (an SVG of the trace's self
  time per target), ``compare_with_baseline`` and ``baseline_branch`` (true: the golden and
  regression baselines are read from that git branch, default main, not the working tree).
"""

from __future__ import annotations

import json
import os
import subprocess
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from trueno.errors import ConfigError
from trueno.trace import metrics as m
from trueno.trace.result import NOT_MEASURED, SKIPPED, Result, check_limits

SECTIONS = (
    "project",
    "performance",
    "assertions",
    "anti_patterns",
    "golden_traces",
    "regression",
    "ci",
    "reporting",
    "profiling",
)
ASSERT_CHECKS = {
    "syscall_percentage": ("syscall", "max_percentage"),
    "syscall_count": ("syscall", "max_count"),
    "total_time": ("max_time_ms",),
    "min_time": ("min_time_ms",),
}
ANTI_CHECKS = {
    "ratio": ("syscalls", "min_ratio"),
    "syscall_count": ("syscall", "max_count"),
}
SEVERITIES = ("warning", "error")
CI_BOOLS = (
    "fail_on_budget_exceeded",
    "fail_on_regression",
    "fail_on_assertion_failure",
    "fail_on_golden_deviation",
)
FORMATS = ("junit", "markdown", "json")
GOLDEN_FORMAT = "trueno.golden"
NUMBERS = (
    "max_time_ms",
    "max_syscalls",
    "max_percentage",
    "max_count",
    "min_time_ms",
    "min_ratio",
    "max_deviation_percent",
    "time_threshold_percent",
    "syscall_threshold_percent",
)
STRINGS = (
    "name",
    "version",
    "description",
    "syscall",
    "file",
    "directory",
    "baseline_dir",
    "output_dir",
    "flamegraph_dir",
    "baseline_branch",
)
BOOLS = ("enabled", "enable_flamegraphs", "compare_with_baseline", *CI_BOOLS)


def _keys(table, allowed, required, where):
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    extra = set(table) - set(allowed)
    if extra:
        raise ConfigError(f"{where}: unknown keys {sorted(extra)}; expected {sorted(allowed)}")
    missing = set(required) - set(table)
    if missing:
        raise ConfigError(f"{where}: missing keys {sorted(missing)}")
    for key, v in table.items():
        if key in NUMBERS and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            raise ConfigError(f"{where}: {key} must be a number >= 0, found {v!r}")
        if key in STRINGS and not isinstance(v, str):
            raise ConfigError(f"{where}: {key} must be a string, found {v!r}")
        if key in BOOLS and not isinstance(v, bool):
            raise ConfigError(f"{where}: {key} must be true or false, found {v!r}")
    for key in ("applies_to", "syscalls"):
        v = table.get(key)
        if v is not None and (
            not isinstance(v, list) or not v or not all(isinstance(g, str) for g in v)
        ):
            raise ConfigError(f"{where}: {key} must be a non-empty list of strings, found {v!r}")


def _array(data, key, where):
    items = data.get(key, [])
    if not isinstance(items, list):
        raise ConfigError(f"{where}: {key} must be an array of tables ([[{key}]])")
    return items


def _severities(value, where) -> list[str]:
    if isinstance(value, bool):
        return list(SEVERITIES) if value else []
    if not isinstance(value, list) or not set(value) <= set(SEVERITIES):
        raise ConfigError(
            f"{where}: [ci] fail_on_anti_patterns {value!r}: expected true, false or a list "
            f"of {list(SEVERITIES)}"
        )
    return value


def validate(data: dict, where: str = "config") -> None:
    if "project" in data:
        _keys(data["project"], ("name", "version"), (), f"{where}: [project]")
    if "performance" in data:
        _keys(data["performance"], ("budgets",), (), f"{where}: [performance]")
        budgets = data["performance"].get("budgets", {})
        _keys(budgets, list(budgets), (), f"{where}: [performance.budgets]")
        for name, b in budgets.items():
            at = f"{where}: [performance.budgets] {name}"
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
            _keys(r, (*need, "enabled", "applies_to", "description"), need, f"{at} ({check})")
            if r["severity"] not in SEVERITIES:
                raise ConfigError(f"{at}: severity {r['severity']!r}, expected {list(SEVERITIES)}")
    if "golden_traces" in data:
        gt = data["golden_traces"]
        _keys(gt, ("directory", "format", "baselines"), (), f"{where}: [golden_traces]")
        if gt.get("format", GOLDEN_FORMAT) != GOLDEN_FORMAT:
            raise ConfigError(
                f"{where}: [golden_traces] format {gt['format']!r}: trueno compares against "
                f"its own golden digests (format = {GOLDEN_FORMAT!r}, written by `make golden` "
                "or `trueno trace golden capture`), not renacer's JSON traces"
            )
        for i, b in enumerate(_array(gt, "baselines", f"{where}: golden_traces")):
            need = ("name", "file", "max_deviation_percent")
            _keys(b, need, need, f"{where}: golden_traces.baselines[{i}]")
    if "regression" in data:
        allowed = ("baseline_dir", "time_threshold_percent", "syscall_threshold_percent")
        _keys(data["regression"], allowed, (), f"{where}: [regression]")
        if not set(data["regression"]) - {"baseline_dir"}:
            raise ConfigError(f"{where}: [regression]: needs a time or syscall threshold")
    if "ci" in data:
        _keys(data["ci"], (*CI_BOOLS, "fail_on_anti_patterns"), (), f"{where}: [ci]")
        _severities(data["ci"].get("fail_on_anti_patterns", ["error"]), where)
    if "reporting" in data:
        _keys(data["reporting"], ("formats", "output_dir"), (), f"{where}: [reporting]")
        formats = data["reporting"].get("formats", [])
        if not isinstance(formats, list) or not set(formats) <= set(FORMATS):
            raise ConfigError(
                f"{where}: [reporting] formats {formats!r}: expected a list of {list(FORMATS)}"
            )
    if "profiling" in data:
        allowed = ("enable_flamegraphs", "flamegraph_dir", "compare_with_baseline")
        _keys(data["profiling"], (*allowed, "baseline_branch"), (), f"{where}: [profiling]")


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


def _seconds(trace, names):
    """Per run: seconds strace counted in the syscalls ``names`` (None without strace)."""
    values = m.run_values(trace, "syscalls")
    if values is None or any(v.get("source") != "strace" for v in values):
        return None
    return [sum(v["calls"].get(n, {}).get("seconds", 0.0) for n in names) for v in values]


def _skipped(kind, label, globs, target):
    if globs is None or any(fnmatchcase(target or "", g) for g in globs):
        return None
    return Result(kind, label, SKIPPED, message=f"applies_to {globs} does not match {target!r}")


class Baselines:
    """Golden digests, from the working tree or (``compare_with_baseline``) a git branch."""

    def __init__(self, data: dict, base: str) -> None:
        prof = data.get("profiling", {})
        self.base = base
        self.branch = (
            prof.get("baseline_branch", "main") if prof.get("compare_with_baseline") else None
        )

    def load(self, path: str) -> tuple[dict | None, str]:
        """(the digest, where it came from) or (None, why not)."""
        where = f"{self.branch}:{path}" if self.branch else str(Path(self.base, path))
        try:
            if self.branch:
                rel = os.path.relpath(Path(self.base, path), self.base)
                proc = subprocess.run(
                    ["git", "-C", self.base, "show", f"{self.branch}:./{rel}"],
                    capture_output=True,
                    timeout=30,
                )
                if proc.returncode:
                    return None, f"git show {where}: {proc.stderr.decode().strip()}"
                text = proc.stdout.decode()
            else:
                text = Path(where).read_text()
            gold = json.loads(text)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            return None, f"baseline {where}: {exc}"
        if not isinstance(gold, dict) or gold.get("schema") != GOLDEN_FORMAT:
            return None, f"baseline {where} is not a {GOLDEN_FORMAT} digest"
        return gold, where


def _deviation(kind, label, cur, gold, key, limit, what):
    if gold[0] is None:
        return Result(kind, label, NOT_MEASURED, limit={"max": limit}, message=gold[1])
    values = [v for v in gold[0].get(key) or [] if v is not None]
    if cur is None or not values:
        return Result(
            kind,
            label,
            NOT_MEASURED,
            limit={"max": limit},
            message=f"{what} not measured in this trace or in {gold[1]} (a golden captured "
            "without it: re-capture with make golden)",
        )
    base = float(np.median(values))
    res = check_limits(kind, label, 100.0 * (cur - base) / base, None, limit, "%")
    res.message = f"{what} {cur:.6g} vs {base:.6g} in {gold[1]}: {res.message}"
    return res


def evaluate(trace: dict, data: dict, target: str | None, base: str = ".") -> list[Result]:
    ci = data.get("ci", {})
    baselines = Baselines(data, base)
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
            add(res, "fail_on_budget_exceeded")
        if "max_syscalls" in b:
            res = check_limits(
                kind, f"{name}.max_syscalls", _calls(trace, "total"), None, b["max_syscalls"]
            )
            add(res, "fail_on_budget_exceeded")
    for a in data.get("assertions", []):
        kind, label = f"assertions.{a['check']}", a["name"]
        res = _skipped(kind, label, a.get("applies_to"), target)
        if res is None:
            res = _assertion(trace, a, kind, label)
        add(res, "fail_on_assertion_failure")
    fail_sev = _severities(ci.get("fail_on_anti_patterns", ["error"]), "")
    for r in data.get("anti_patterns", {}).get("rules", []):
        kind, label = f"anti_patterns.{r['check']}", r["name"]
        if not r.get("enabled", True):
            out.append(Result(kind, label, SKIPPED, message="enabled = false"))
            continue
        res = _skipped(kind, label, r.get("applies_to"), target)
        if res is None:
            res = _anti(trace, r, kind, label)
            res.message = f"[{r['severity']}] {res.message}"
            if r["severity"] not in fail_sev:
                res.soften()
        out.append(res)
    for b in data.get("golden_traces", {}).get("baselines", []):
        if b["name"] != target:
            continue
        res = _deviation(
            "golden_traces.baseline",
            f"golden {b['name']}",
            _wall(trace),
            baselines.load(b["file"]),
            "wall_ns",
            b["max_deviation_percent"],
            "median wall ns",
        )
        add(res, "fail_on_golden_deviation")
    reg = data.get("regression")
    if reg is not None:
        folder = reg.get("baseline_dir", data.get("golden_traces", {}).get("directory"))
        gold = baselines.load(str(Path(folder or "golden_traces", f"{target}.json")))
        if "time_threshold_percent" in reg:
            limit = reg["time_threshold_percent"]
            res = _deviation(
                "regression.time", "regression time", _wall(trace), gold, "wall_ns", limit,
                "median wall ns",
            )  # fmt: skip
            add(res, "fail_on_regression")
        if "syscall_threshold_percent" in reg:
            limit = reg["syscall_threshold_percent"]
            res = _deviation(
                "regression.syscalls", "regression syscalls", _calls(trace, "total"), gold,
                "syscalls", limit, "total syscalls",
            )  # fmt: skip
            add(res, "fail_on_regression")
    return out


def _assertion(trace, a, kind, label):
    check = a["check"]
    if check == "total_time":
        return check_limits(kind, label, _wall(trace), None, a["max_time_ms"], "ms", 1e6)
    if check == "min_time":
        return check_limits(kind, label, _wall(trace), a["min_time_ms"], None, "ms", 1e6)
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
    seconds, walls = _seconds(trace, r["syscalls"]), m.run_values(trace, "wall_ns")
    if seconds is None or not walls or not all(walls):
        return Result(
            kind,
            label,
            NOT_MEASURED,
            limit={"max": r["min_ratio"]},
            message="time per syscall needs strace (trace run --syscalls strace)",
        )
    share = max(s * 1e9 / w for s, w in zip(seconds, walls, strict=True))
    res = check_limits(kind, label, share, None, r["min_ratio"])
    res.message = f"time in {r['syscalls']} / wall: {res.message}"
    return res


def project(data: dict) -> str:
    p = data.get("project", {})
    return " ".join(str(p[k]) for k in ("name", "version") if k in p)


def flamegraph_dir(data: dict) -> str | None:
    prof = data.get("profiling", {})
    return prof.get("flamegraph_dir", "flamegraphs") if prof.get("enable_flamegraphs") else None
