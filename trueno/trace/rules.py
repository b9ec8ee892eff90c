"""``renacer.toml``: budgets and anti-pattern rules, evaluated for real against a trace.

Layout: top-level ``[[rules]]`` apply to every trace; ``[targets.NAME]`` holds
``[[targets.NAME.rules]]`` for the trace named NAME (an example's script stem). Each rule has a
``kind`` and the keys that kind declares in ``KINDS``; an unknown kind or key is a
ConfigError. Each result is "pass", "fail" or "not measured" (a metric the trace does not
hold never passes). Exit codes: 0 all pass, 1 a violation, 2 config error, 3 not measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trueno.errors import ConfigError
from trueno.trace import antipatterns as ap
from trueno.trace import metrics as m
from trueno.trace.result import FAIL, NOT_MEASURED, PASS, Result, check_limits

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

STATS = ("mean", "p50", "p95", "p99", "max", "total")
RUN_STATS = ("max", "min", "median", "mean")

# kind -> (required keys, optional keys); "label" is allowed everywhere
KINDS: dict[str, tuple[tuple, tuple]] = {
    "wall_time": ((), ("max_ms", "min_ms", "stat")),
    "startup": (("max_ms",), ("stat",)),
    "critical_path": (("max_ms",), ("stat",)),
    "op_latency": (("op", "max_us"), ("stat",)),
    "span_count": ((), ("max", "min", "op", "category")),
    "syscall_count": (("max",), ("syscall",)),
    "syscall_percent": (("syscall", "max_percent"), ()),
    "peak_memory": (("max_mb",), ()),
    "transfer_budget": ((), ("max_bytes", "max_ms", "max_count")),
    "throughput": (("op",), ("min_gbps", "min_gflops")),
    "expected_backend": (("op", "backend"), ("min_elements",)),
    "golden": (("path",), ("timing_factor",)),
    "pcie_bottleneck": (("max_ratio",), ()),
    "tiny_gpu_ops": (("max_bytes",), ("max_count",)),
    "tight_loop": (("max_op_us", "min_repeats"), ()),
    "hot_loop_alloc": (("max_per_parent",), ()),
    "dominant_op": (("max_fraction",), ()),
}
ONE_OF = {
    "wall_time": ("max_ms", "min_ms"),
    "span_count": ("max", "min"),
    "transfer_budget": ("max_bytes", "max_ms", "max_count"),
    "throughput": ("min_gbps", "min_gflops"),
}


def load_config(path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: invalid TOML: {exc}") from None
    validate(data, str(path))
    data["_base"] = str(Path(path).resolve().parent)
    return data


def validate(data: dict, where: str = "config") -> None:
    from trueno.trace import renacer_dsl, trueno018

    known = {"version", "description", "rules", "targets", "assertion", *trueno018.SECTIONS}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level keys {sorted(unknown)}; expected "
            + ", ".join(sorted(known))
        )
    if "assertion" in data:
        renacer_dsl.validate(data["assertion"], where)
    trueno018.validate(data, where)
    for i, rule in enumerate(data.get("rules", [])):
        validate_rule(rule, f"{where}: rules[{i}]")
    targets = data.get("targets", {})
    if not isinstance(targets, dict):
        raise ConfigError(f"{where}: targets must be a table")
    for name, target in targets.items():
        extra = set(target) - {"rules", "description", "command"}
        if extra:
            raise ConfigError(
                f"{where}: targets.{name}: unknown keys {sorted(extra)}; "
                "expected rules, description, command"
            )
        for i, rule in enumerate(target.get("rules", [])):
            validate_rule(rule, f"{where}: targets.{name}.rules[{i}]")


def validate_rule(rule: dict, where: str) -> None:
    if not isinstance(rule, dict) or "kind" not in rule:
        raise ConfigError(f"{where}: a rule needs a 'kind'")
    kind = rule["kind"]
    if kind not in KINDS:
        raise ConfigError(
            f"{where}: unknown rule kind {kind!r}; expected one of " + ", ".join(sorted(KINDS))
        )
    required, optional = KINDS[kind]
    keys = set(rule) - {"kind", "label"}
    extra = keys - set(required) - set(optional)
    if extra:
        raise ConfigError(
            f"{where}: {kind}: unknown keys {sorted(extra)}; expected {sorted(required + optional)}"
        )
    missing = set(required) - keys
    if missing:
        raise ConfigError(f"{where}: {kind}: missing keys {sorted(missing)}")
    if kind in ONE_OF and not keys & set(ONE_OF[kind]):
        raise ConfigError(f"{where}: {kind}: needs at least one of {list(ONE_OF[kind])}")
    stat = rule.get("stat")
    allowed = STATS if kind == "op_latency" else RUN_STATS
    if stat is not None and stat not in allowed:
        raise ConfigError(f"{where}: {kind}: stat {stat!r}, expected one of {allowed}")
    for key in keys - {"op", "backend", "syscall", "category", "path", "stat"}:
        if not isinstance(rule[key], (int, float)) or isinstance(rule[key], bool):
            raise ConfigError(f"{where}: {kind}.{key} must be a number, found {rule[key]!r}")


def rules_for(config: dict, name: str | None) -> list[dict]:
    rules = list(config.get("rules", []))
    if name and name in config.get("targets", {}):
        rules += config["targets"][name].get("rules", [])
    return rules


def evaluate_config(config: dict, trace: dict, target: str | None) -> list[Result]:
    """Every layout in the file: our [[rules]], renacer's [[assertion]], trueno 0.18's."""
    from trueno.trace import renacer_dsl, trueno018

    base = config.get("_base", ".")
    results = evaluate(trace, rules_for(config, target), base)
    results += renacer_dsl.evaluate(trace, config.get("assertion", []))
    return results + trueno018.evaluate(trace, config, target, base)


def evaluate(trace: dict, rules: list[dict], base: str = ".") -> list[Result]:
    return [evaluate_rule(trace, rule, base) for rule in rules]


def exit_code(results: list[Result]) -> int:
    statuses = {r.status for r in results}
    if FAIL in statuses:
        return 1
    return 3 if NOT_MEASURED in statuses else 0


def evaluate_rule(trace: dict, rule: dict, base: str = ".") -> Result:
    kind = rule["kind"]
    label = rule.get("label") or kind + "".join(
        f" {k}={rule[k]}" for k in ("op", "syscall", "backend") if k in rule
    )
    return _EVAL[kind](trace, rule, kind, label, base)


def _run_stat(trace, rule, key):
    values = m.run_values(trace, key)
    return None if values is None else m.reduce(values, rule.get("stat", "median"))


def _wall(trace, rule, kind, label, base):
    return check_limits(
        kind,
        label,
        _run_stat(trace, rule, "wall_ns"),
        rule.get("min_ms"),
        rule.get("max_ms"),
        "ms",
        1e6,
    )


def _startup(trace, rule, kind, label, base):
    return check_limits(
        kind, label, _run_stat(trace, rule, "startup_ns"), None, rule["max_ms"], "ms", 1e6
    )


def _critical(trace, rule, kind, label, base):
    value = None
    if m.spans_measured(trace) and trace["spans"]:
        value = m.reduce(m.critical_path_ns(trace), rule.get("stat", "median"))
    return check_limits(kind, label, value, None, rule["max_ms"], "ms", 1e6)


def _op_latency(trace, rule, kind, label, base):
    spans = m.matching(trace, rule["op"]) if m.spans_measured(trace) else []
    value = m.op_stat(m.op_durations(trace, spans), rule.get("stat", "p50"))
    res = check_limits(kind, label, value, None, rule["max_us"], "us", 1e3)
    if value is None:
        res.message = f"no op span matches {rule['op']!r}"
    return res


def _span_count(trace, rule, kind, label, base):
    if not m.complete(trace):
        return Result(
            kind,
            label,
            NOT_MEASURED,
            message="spans were dropped or not recorded; counts are incomplete",
        )
    counts = []
    for spans in m.per_run(trace):
        counts.append(
            sum(
                1
                for s in spans
                if m.fnmatchcase(s["name"], rule.get("op", "*"))
                and rule.get("category", m.counted(s)) == s.get("category")
            )
        )
    return check_limits(kind, label, max(counts), rule.get("min"), rule.get("max"))


def _syscalls(trace):
    values = m.run_values(trace, "syscalls")
    return values[0] if values else None


def _syscall_count(trace, rule, kind, label, base):
    sc, name = _syscalls(trace), rule.get("syscall", "total")
    value = None
    if sc is not None:
        if name == "total":
            value = sc.get("total")
        elif name in sc["calls"]:
            value = sc["calls"][name]["calls"]
        elif sc.get("source") == "strace":
            value = 0  # strace counts every syscall: absent means none
    res = check_limits(kind, label, value, None, rule["max"])
    if value is None and sc is not None:
        res.message = f"{sc.get('source')} counters do not measure {name!r}"
    return res


def _syscall_percent(trace, rule, kind, label, base):
    sc = _syscalls(trace)
    if sc is None or not sc.get("total"):
        return Result(
            kind, label, NOT_MEASURED, message="no complete syscall counts (needs strace)"
        )
    calls = sc["calls"].get(rule["syscall"], {"calls": 0})["calls"]
    return check_limits(kind, label, 100.0 * calls / sc["total"], None, rule["max_percent"], "%")


def _memory(trace, rule, kind, label, base):
    values = m.run_values(trace, "max_rss_bytes")
    return check_limits(
        kind, label, None if values is None else max(values), None, rule["max_mb"], "MB", 1e6
    )


def _transfer(trace, rule, kind, label, base):
    if not m.spans_measured(trace):
        return Result(kind, label, NOT_MEASURED, message="no spans recorded")
    xs = m.transfers(trace)
    runs = max(1, len(trace["runs"]))
    for key, value, scale in (
        ("max_bytes", sum(s["bytes"] for s in xs) / runs, 1.0),
        ("max_ms", sum(s["dur_ns"] for s in xs) / runs, 1e6),
        ("max_count", len(xs) / runs, 1.0),
    ):
        if key in rule:
            res = check_limits(kind, label, value, None, rule[key], "", scale)
            if res.status != PASS:
                return res
    return Result(
        kind,
        label,
        PASS,
        len(xs) / runs,
        {k: rule[k] for k in rule if "max" in k},
        f"{len(xs) / runs:.0f} transfers per run",
    )


def _throughput(trace, rule, kind, label, base):
    gbps, gflops = m.throughput(trace, m.matching(trace, rule["op"]))
    for key, value in (("min_gbps", gbps), ("min_gflops", gflops)):
        if key in rule:
            res = check_limits(kind, label, value, rule[key], None, key[4:])
            if res.status != PASS:
                return res
    return res


def _backend(trace, rule, kind, label, base):
    allowed = rule["backend"] if isinstance(rule["backend"], list) else [rule["backend"]]
    spans = [
        s
        for s in m.matching(trace, rule["op"])
        if m.shape_elements(s) >= rule.get("min_elements", 0)
    ]
    if not spans:
        return Result(kind, label, NOT_MEASURED, message=f"no op matches {rule['op']!r}")
    wrong = sorted({f"{s['name']}:{s['backend']}" for s in spans if s["backend"] not in allowed})
    if wrong:
        return Result(kind, label, FAIL, wrong, allowed, f"ran on {', '.join(wrong[:5])}")
    return Result(kind, label, PASS, len(spans), allowed, f"{len(spans)} calls on {allowed}")


def _golden(trace, rule, kind, label, base):
    from trueno.trace import golden

    path = Path(base, rule["path"])
    if not path.exists():
        return Result(kind, label, NOT_MEASURED, message=f"golden {path} does not exist")
    report = golden.compare(golden.load(path), trace, rule.get("timing_factor", 10.0))
    status = PASS if report["ok"] else FAIL
    return Result(
        kind,
        label,
        status,
        None,
        str(path),
        "; ".join(report["problems"][:5]) or "matches the golden trace",
    )


_EVAL = {
    "wall_time": _wall,
    "startup": _startup,
    "critical_path": _critical,
    "op_latency": _op_latency,
    "span_count": _span_count,
    "syscall_count": _syscall_count,
    "syscall_percent": _syscall_percent,
    "peak_memory": _memory,
    "transfer_budget": _transfer,
    "throughput": _throughput,
    "expected_backend": _backend,
    "golden": _golden,
    "pcie_bottleneck": ap.pcie_bottleneck,
    "tiny_gpu_ops": ap.tiny_gpu,
    "tight_loop": ap.tight_loop,
    "hot_loop_alloc": ap.alloc,
    "dominant_op": ap.dominant,
}
