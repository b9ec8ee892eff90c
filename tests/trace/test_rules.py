"""Every rule kind of renacer.toml: pass, violation and "not measured"; config errors."""

from __future__ import annotations

import pytest
from tracefx import make_run, span, synthetic

from trueno.errors import ConfigError
from trueno.trace import golden, rules

PASS, FAIL, NM = rules.PASS, rules.FAIL, rules.NOT_MEASURED


def check(trace, **rule):
    rules.validate_rule(rule, "test")
    return rules.evaluate_rule(trace, rule).status


def unmeasured_trace():
    """A capture-style trace: spans but no process measurements (wall, RSS, syscalls)."""
    runs = [{"dropped": 0}]
    return synthetic(runs=runs)


@pytest.mark.parametrize(
    "rule, ok, bad",
    [
        ({"kind": "wall_time"}, {"max_ms": 200}, {"max_ms": 50}),
        ({"kind": "wall_time"}, {"min_ms": 50}, {"min_ms": 500}),
        ({"kind": "startup"}, {"max_ms": 60}, {"max_ms": 10}),
        ({"kind": "critical_path"}, {"max_ms": 2}, {"max_ms": 0.5}),
        ({"kind": "op_latency", "op": "add"}, {"max_us": 2, "stat": "p99"}, {"max_us": 0.5}),
        ({"kind": "op_latency", "op": "mat*", "stat": "total"}, {"max_us": 900}, {"max_us": 10}),
        ({"kind": "span_count"}, {"max": 5, "min": 5}, {"max": 4}),
        ({"kind": "span_count", "op": "add"}, {"min": 3}, {"min": 4}),
        ({"kind": "syscall_count", "syscall": "read"}, {"max": 300}, {"max": 299}),
        ({"kind": "syscall_count"}, {"max": 1000}, {"max": 10}),
        ({"kind": "syscall_percent", "syscall": "futex"}, {"max_percent": 60}, {"max_percent": 59}),
        ({"kind": "peak_memory"}, {"max_mb": 64}, {"max_mb": 10}),
        ({"kind": "throughput", "op": "add"}, {"min_gbps": 1.0}, {"min_gbps": 100.0}),
        ({"kind": "throughput", "op": "matmul"}, {"min_gflops": 1.0}, {"min_gflops": 10.0}),
        (
            {"kind": "expected_backend", "op": "*"},
            {"backend": "numpy"},
            {"backend": ["numba", "cupy"]},
        ),
        ({"kind": "dominant_op"}, {"max_fraction": 0.9}, {"max_fraction": 0.5}),
        ({"kind": "tight_loop", "max_op_us": 5}, {"min_repeats": 4}, {"min_repeats": 3}),
    ],
)
def test_rule_passes_and_fails(rule, ok, bad):
    trace = synthetic()
    assert check(trace, **rule, **ok) == PASS
    assert check(trace, **rule, **bad) == FAIL


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "wall_time", "max_ms": 1e9},
        {"kind": "startup", "max_ms": 1e9},
        {"kind": "peak_memory", "max_mb": 1e9},
        {"kind": "syscall_count", "max": 1e9},
        {"kind": "syscall_percent", "syscall": "read", "max_percent": 100},
        {"kind": "op_latency", "op": "no_such_op", "max_us": 1e9},
        {"kind": "expected_backend", "op": "no_such_op", "backend": "numpy"},
        {"kind": "hot_loop_alloc", "max_per_parent": 1000},
    ],
)
def test_unmeasured_metric_never_passes(rule):
    assert check(unmeasured_trace(), **rule) == NM


def test_span_count_with_dropped_spans_is_not_measured():
    trace = synthetic(runs=[make_run(dropped=5)])
    assert check(trace, kind="span_count", max=1000) == NM


def test_proc_syscall_counters_measure_only_read_and_write():
    sc = {"source": "proc", "total": None, "calls": {"read": {"calls": 10}}}
    trace = synthetic(runs=[make_run(syscalls=sc)])
    assert check(trace, kind="syscall_count", syscall="read", max=10) == PASS
    assert check(trace, kind="syscall_count", syscall="mmap", max=10) == NM
    assert check(trace, kind="syscall_count", max=10) == NM  # total unknown


def gpu_trace(transfer_ns: int, kernel_ns: int, kernel_bytes: int = 1 << 20):
    spans = [
        span(1, "to_device", 0, transfer_ns, category="transfer", backend="cupy", nbytes=1 << 20),
        span(2, "matmul", transfer_ns, kernel_ns, backend="cupy", nbytes=kernel_bytes),
    ]
    return synthetic(spans)


def test_pcie_bottleneck_and_transfer_budget():
    assert check(gpu_trace(100, 1000), kind="pcie_bottleneck", max_ratio=1.0) == PASS
    assert check(gpu_trace(5000, 1000), kind="pcie_bottleneck", max_ratio=1.0) == FAIL
    assert check(synthetic(), kind="pcie_bottleneck", max_ratio=1.0) == PASS  # no GPU work
    assert check(gpu_trace(100, 1000), kind="transfer_budget", max_bytes=1 << 20) == PASS
    assert check(gpu_trace(100, 1000), kind="transfer_budget", max_bytes=1000) == FAIL
    assert check(gpu_trace(100, 1000), kind="transfer_budget", max_count=0) == FAIL
    assert check(gpu_trace(100, 1000), kind="transfer_budget", max_ms=1) == PASS


def test_tiny_gpu_ops():
    assert check(gpu_trace(1, 1, kernel_bytes=64), kind="tiny_gpu_ops", max_bytes=4096) == FAIL
    assert check(gpu_trace(1, 1), kind="tiny_gpu_ops", max_bytes=4096) == PASS


def test_hot_loop_alloc():
    spans = [span(1, "decode", 0, 10_000, category="region")]
    spans += [span(2 + i, "kv_grow", 10 + i, 5, parent=1, category="alloc") for i in range(20)]
    trace = synthetic(spans)
    assert check(trace, kind="hot_loop_alloc", max_per_parent=20) == PASS
    result = rules.evaluate_rule(trace, {"kind": "hot_loop_alloc", "max_per_parent": 3})
    assert result.status == FAIL and "kv_grow under decode" in result.message


def test_golden_rule(tmp_path):
    trace = synthetic()
    path = tmp_path / "g.json"
    path.write_text(golden.render(golden.digest(trace)))
    assert rules.evaluate_rule(trace, {"kind": "golden", "path": str(path)}).status == PASS
    changed = synthetic(synthetic()["spans"][:-1])  # one op fewer
    res = rules.evaluate_rule(changed, {"kind": "golden", "path": str(path)})
    assert res.status == FAIL and "structure differs" in res.message
    missing = {"kind": "golden", "path": str(tmp_path / "none.json")}
    assert rules.evaluate_rule(trace, missing).status == NM


def test_exit_codes():
    r = rules.Result
    assert rules.exit_code([r("a", "a", PASS)]) == 0
    assert rules.exit_code([r("a", "a", PASS), r("b", "b", NM)]) == 3
    assert rules.exit_code([r("a", "a", FAIL), r("b", "b", NM)]) == 1


@pytest.mark.parametrize(
    "text, match",
    [
        ('[[rules]]\nkind = "no_such_kind"\n', "unknown rule kind"),
        ('[[rules]]\nkind = "wall_time"\nmax_ms = 1\ncolour = "red"\n', "unknown keys"),
        ('[[rules]]\nkind = "op_latency"\nop = "add"\n', "missing keys"),
        ('[[rules]]\nkind = "wall_time"\n', "at least one of"),
        ('[[rules]]\nkind = "wall_time"\nmax_ms = "fast"\n', "must be a number"),
        ('[[rules]]\nkind = "op_latency"\nop = "a"\nmax_us = 1\nstat = "p42"\n', "stat"),
        ("[[rules]]\nmax_ms = 1\n", "needs a 'kind'"),
        ("budgets = 3\n", "unknown top-level keys"),
        ("[targets.x]\nwall = 3\n", "unknown keys"),
        ("this is = = not toml", "invalid TOML"),
    ],
)
def test_bad_configs_are_config_errors(tmp_path, text, match):
    path = tmp_path / "renacer.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        rules.load_config(path)


def test_repo_renacer_toml_is_valid_and_covers_every_example():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = rules.load_config(root / "renacer.toml")
    examples = {p.stem for p in (root / "examples").glob("*.py")}
    assert examples <= set(config["targets"])
    for name in examples:
        kinds = {r["kind"] for r in rules.rules_for(config, name)}
        assert {
            "wall_time",
            "startup",
            "span_count",
            "syscall_count",
            "peak_memory",
            "golden",
        } <= kinds
