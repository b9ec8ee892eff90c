"""trueno 0.18's published renacer.toml layout through the CLI: every key evaluated against
measured values, or refused by name (exit 2)."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET

import pytest
from tracefx import make_run, synthetic

from trueno.cli.main import main

# trueno 0.18's renacer.toml as it ships, every section and key of it, with limits set for
# the synthetic trace (wall 100 ms; strace: 1000 syscalls, read 300 / 1 ms, mmap 100 / 1 ms,
# futex 600 / 2 ms) and the budget names pointed at it
PUBLISHED = """
[project]
name = "trueno"
version = "0.18.0"

[performance.budgets]
synthetic = { max_time_ms = 200, max_syscalls = 2000 }
other_example = { max_time_ms = 1, max_syscalls = 1 }

[[assertions]]
name = "minimal_io_overhead"
description = "SIMD operations should have minimal I/O overhead"
check = "syscall_percentage"
syscall = "read"
max_percentage = 35.0

[[assertions]]
name = "memory_allocation_budget"
description = "Memory allocation should be controlled"
check = "syscall_count"
syscall = "mmap"
max_count = 100

[[assertions]]
name = "fast_execution"
check = "total_time"
max_time_ms = 150

[[assertions]]
name = "gpu_transfer_overhead"
check = "min_time"
min_time_ms = 3.0
applies_to = ["gpu_*"]

[regression]
time_threshold_percent = 50.0
syscall_threshold_percent = 15.0

[golden_traces]
directory = "golden_traces"
format = "trueno.golden"

[[golden_traces.baselines]]
name = "synthetic"
file = "golden_traces/synthetic.json"
max_deviation_percent = 50.0

[anti_patterns]
[[anti_patterns.rules]]
name = "pcie_bottleneck"
description = "Excessive GPU memory transfers relative to compute time"
enabled = true
check = "ratio"
syscalls = ["write", "read"]
min_ratio = 0.5
severity = "warning"

[[anti_patterns.rules]]
name = "memory_thrashing"
enabled = true
check = "syscall_count"
syscall = "mmap"
max_count = 50
severity = "error"

[ci]
fail_on_budget_exceeded = true
fail_on_regression = true
fail_on_anti_patterns = ["error"]

[reporting]
formats = ["json", "markdown", "junit"]
output_dir = "reports"

[profiling]
enable_flamegraphs = true
flamegraph_dir = "flames"
compare_with_baseline = false
baseline_branch = "main"
"""

CLEAN = PUBLISHED.replace("max_count = 50\n", "max_count = 500\n")  # no rule fails


def write_golden(tmp_path, name, wall_ms, syscalls=(1000,)):
    gold = tmp_path / "golden_traces" / f"{name}.json"
    gold.parent.mkdir(exist_ok=True)
    doc = {"schema": "trueno.golden", "version": 1, "wall_ns": [wall_ms * 1e6]}
    if syscalls is not None:
        doc["syscalls"] = list(syscalls)
    gold.write_text(json.dumps(doc))
    return gold


def assert_cli(tmp_path, text, trace=None, *extra):
    """Exit code and {label: (status, measured, limit)} from the --json report; the run's
    working directory is tmp_path (the [reporting] and [profiling] folders land there)."""
    cfg = tmp_path / "renacer.toml"
    cfg.write_text(text)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(trace or synthetic()))
    out = tmp_path / "r.json"
    code = main(["trace", "assert", "--config", str(cfg), "--json", str(out), *extra, str(path)])
    if code == 2:
        return code, None
    doc = json.loads(out.read_text())
    return code, {r["label"]: (r["status"], r["measured"], r["limit"]) for r in doc["results"]}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_published_file_evaluated_key_by_key(in_tmp, capsys):
    write_golden(in_tmp, "synthetic", 80, syscalls=[900, 950])  # wall +25 %, syscalls +7.5 %
    code, res = assert_cli(in_tmp, PUBLISHED)
    assert code == 1, res  # memory_thrashing: 100 mmap calls > 50, severity error
    assert res == {
        "synthetic.max_time_ms": ("pass", 100, {"max": 200}),
        "synthetic.max_syscalls": ("pass", 1000, {"max": 2000}),
        "minimal_io_overhead": ("pass", 30, {"max": 35.0}),
        "memory_allocation_budget": ("pass", 100, {"max": 100}),
        "fast_execution": ("pass", 100, {"max": 150}),
        "gpu_transfer_overhead": ("skipped", None, None),  # applies_to gpu_* only
        "pcie_bottleneck": ("pass", pytest.approx(0.001 / 0.1), {"max": 0.5}),
        "memory_thrashing": ("fail", 100, {"max": 50}),
        "golden synthetic": ("pass", pytest.approx(25.0), {"max": 50.0}),
        "regression time": ("pass", pytest.approx(25.0), {"max": 50.0}),
        "regression syscalls": ("pass", pytest.approx(100 * 75 / 925), {"max": 15.0}),
    }
    # [reporting]: the three files, under output_dir, named after the trace
    suite = ET.parse(in_tmp / "reports" / "synthetic.junit.xml").getroot()
    assert suite.get("name") == "trueno 0.18.0"  # [project]
    ts = suite.find("testsuite")
    assert (ts.get("tests"), ts.get("failures"), ts.get("skipped")) == ("11", "1", "1")
    md = (in_tmp / "reports" / "synthetic.md").read_text()
    assert md.startswith("## trace assert: synthetic (trueno 0.18.0)")
    assert "| memory_thrashing | anti_patterns.syscall_count | fail | 100 | max 50 |" in md
    doc = json.loads((in_tmp / "reports" / "synthetic.json").read_text())
    assert doc["project"] == "trueno 0.18.0" and doc["counts"]["fail"] == 1
    # [profiling]: the flamegraph of the trace
    svg = (in_tmp / "flames" / "synthetic.svg").read_text()
    assert svg.startswith("<svg") and "matmul" in svg
    err = capsys.readouterr().err
    assert "flames/synthetic.svg" in err and "reports/synthetic.junit.xml" in err


def test_ci_keys_turn_failures_into_warnings(in_tmp):
    write_golden(in_tmp, "synthetic", 50, syscalls=[500])  # +100 % on both
    tight = PUBLISHED.replace("max_time_ms = 200", "max_time_ms = 50")
    code, res = assert_cli(in_tmp, tight)
    assert code == 1
    failed = {k for k, v in res.items() if v[0] == "fail"}
    assert failed == {
        "synthetic.max_time_ms",
        "memory_thrashing",
        "golden synthetic",
        "regression time",
        "regression syscalls",
    }
    lenient = (
        tight.replace("fail_on_budget_exceeded = true", "fail_on_budget_exceeded = false")
        .replace("fail_on_regression = true", "fail_on_regression = false")
        .replace('fail_on_anti_patterns = ["error"]', "fail_on_anti_patterns = false")
        .replace("[ci]", "[ci]\nfail_on_golden_deviation = false")
    )
    code, res = assert_cli(in_tmp, lenient)
    assert code == 0
    assert {k for k, v in res.items() if v[0] == "warning"} == failed
    # a warning-severity rule fails once its severity is listed
    io_bound = PUBLISHED.replace("min_ratio = 0.5", "min_ratio = 0.005")
    code, res = assert_cli(in_tmp, io_bound.replace('["error"]', '["warning", "error"]'))
    assert res["pcie_bottleneck"][0] == "fail"
    code, res = assert_cli(in_tmp, io_bound)
    assert res["pcie_bottleneck"][0] == "warning"


def test_disabled_rule_skipped_and_ratio_needs_strace(in_tmp):
    write_golden(in_tmp, "synthetic", 100)
    code, res = assert_cli(in_tmp, PUBLISHED.replace("enabled = true", "enabled = false"))
    assert code == 0
    assert res["pcie_bottleneck"][0] == res["memory_thrashing"][0] == "skipped"
    proc = make_run(syscalls={"source": "proc", "total": 40, "calls": {}})
    code, res = assert_cli(in_tmp, PUBLISHED, synthetic(runs=[proc]))
    assert code == 3
    assert res["pcie_bottleneck"][0] == "not measured"


def test_baselines_not_measured(in_tmp):
    text = CLEAN
    code, res = assert_cli(in_tmp, text)  # no golden_traces/synthetic.json at all
    assert code == 3
    for key in ("golden synthetic", "regression time", "regression syscalls"):
        assert res[key][0] == "not measured", key
    write_golden(in_tmp, "synthetic", 100, syscalls=None)  # captured without strace
    code, res = assert_cli(in_tmp, text)
    assert code == 3 and res["regression time"][0] == "pass"
    assert res["regression syscalls"][0] == "not measured"
    (in_tmp / "golden_traces" / "synthetic.json").write_text('{"wall_ns": [1e8]}')  # no schema
    code, res = assert_cli(in_tmp, text)
    assert res["golden synthetic"][0] == "not measured"


def test_regression_directory_from_golden_traces(in_tmp):
    write_golden(in_tmp, "synthetic", 100)
    moved = in_tmp / "base"
    moved.mkdir()
    (in_tmp / "golden_traces" / "synthetic.json").rename(moved / "synthetic.json")
    text = PUBLISHED.replace('directory = "golden_traces"', 'directory = "base"')
    text = text.replace("golden_traces/synthetic.json", "base/synthetic.json")
    code, res = assert_cli(in_tmp, text)
    assert res["regression time"][:2] == ("pass", 0.0) and res["golden synthetic"][0] == "pass"


def git(cwd, *args):
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def test_compare_with_baseline_reads_the_branch(in_tmp):
    git(in_tmp, "init", "-q", "-b", "main")
    write_golden(in_tmp, "synthetic", 100)  # committed on main: no regression
    git(in_tmp, "add", "golden_traces")
    git(in_tmp, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "gold")
    write_golden(in_tmp, "synthetic", 50)  # the working tree's copy: +100 %
    code, res = assert_cli(in_tmp, PUBLISHED)
    assert res["regression time"][0] == "fail"
    code, res = assert_cli(
        in_tmp, PUBLISHED.replace("compare_with_baseline = false", "compare_with_baseline = true")
    )
    assert res["regression time"][:2] == ("pass", 0.0)
    assert res["golden synthetic"][:2] == ("pass", 0.0)
    other = CLEAN.replace("compare_with_baseline = false", "compare_with_baseline = true")
    code, res = assert_cli(
        in_tmp, other.replace('baseline_branch = "main"', 'baseline_branch = "v9"')
    )
    assert code == 3 and res["regression time"][0] == "not measured"


# (a change to the published file, a word the refusal names: the key, value or table at fault)
REFUSED = [
    ('version = "0.18.0"', "version = 18", "version"),
    ('version = "0.18.0"', 'version = "0.18.0"\nlicense = "MIT"', "license"),
    ("max_syscalls = 2000 }", "max_syscall = 2000 }", "max_syscall"),
    ("max_syscalls = 2000 }", 'max_syscalls = "2000" }', "max_syscalls"),
    ("{ max_time_ms = 200, max_syscalls = 2000 }", "{}", "synthetic"),
    ("max_time_ms = 150", "max_ms = 150", "max_ms"),
    ("min_time_ms = 3.0", "min_ms = 3.0", "min_ms"),
    ('check = "total_time"', 'check = "wall"', "wall"),
    ('applies_to = ["gpu_*"]', 'applies_to = "gpu_*"', "applies_to"),
    ('syscalls = ["write", "read"]', 'syscalls = "read"', "syscalls"),
    ("min_ratio = 0.5", "max_ratio = 0.5", "max_ratio"),
    ('severity = "warning"', 'severity = "fatal"', "fatal"),
    ('severity = "warning"', "", "severity"),
    ("enabled = true", 'enabled = "yes"', "enabled"),
    ('format = "trueno.golden"', 'format = "renacer-json-v1"', "renacer-json-v1"),
    ('directory = "golden_traces"', "directories = 1", "directories"),
    ('file = "golden_traces/synthetic.json"', 'path = "g.json"', "path"),
    ("max_deviation_percent = 50.0", "", "max_deviation_percent"),
    ("time_threshold_percent = 50.0", "time_threshold = 50.0", "time_threshold"),
    ("fail_on_regression = true", 'fail_on_regression = "yes"', "fail_on_regression"),
    ("fail_on_regression = true", "fail_on_everything = true", "fail_on_everything"),
    ('fail_on_anti_patterns = ["error"]', 'fail_on_anti_patterns = ["fatal"]', "fatal"),
    ('formats = ["json", "markdown", "junit"]', 'formats = ["html"]', "html"),
    ('output_dir = "reports"', "output_dir = 5", "output_dir"),
    ("enable_flamegraphs = true", 'enable_flamegraphs = "on"', "enable_flamegraphs"),
    ('baseline_branch = "main"', 'baseline_branch = "main"\nflame = 1', "flame"),
    ("[profiling]", "[profile]", "profile"),
]


@pytest.mark.parametrize("old, new, word", REFUSED)
def test_refused_by_name(in_tmp, old, new, word, capsys):
    assert old in PUBLISHED
    assert assert_cli(in_tmp, PUBLISHED.replace(old, new, 1))[0] == 2
    err = capsys.readouterr().err
    assert "renacer.toml" in err and word in err, err
