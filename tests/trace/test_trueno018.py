"""trueno 0.18's published renacer.toml layout through the CLI: evaluated, refused by name."""

from __future__ import annotations

import json

import pytest
from tracefx import synthetic

from trueno.cli.main import main

FILE = """
[performance.budgets.synthetic]
max_time_ms = 200
max_syscalls = 2000

[[assertions]]
name = "futex share"
check = "syscall_percentage"
syscall = "futex"
max_percentage = 70
applies_to = ["synth*"]

[[assertions]]
name = "not for us"
check = "total_time"
max_ms = 1
applies_to = ["other"]

[[anti_patterns.rules]]
name = "mmap per read"
check = "ratio"
numerator = "mmap"
denominator = "read"
max_ratio = 0.1
severity = "warning"

[ci]
fail_on_severity = ["error"]

[reporting]
formats = ["json"]
output_dir = "{out}"
"""


def run(tmp_path, text):
    cfg = tmp_path / "renacer.toml"
    cfg.write_text(text.replace("{out}", str(tmp_path / "rep")))
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps(synthetic()))
    return main(["trace", "assert", "--config", str(cfg), str(trace)])


def test_layout_evaluated_with_warning_and_skip(tmp_path):
    assert run(tmp_path, FILE) == 0
    doc = json.loads((tmp_path / "rep" / "synthetic.json").read_text())
    assert doc["counts"] == {"pass": 3, "fail": 0, "warning": 1, "skipped": 1, "not measured": 0}


def test_error_severity_fails_and_unknown_key_refused(tmp_path):
    assert run(tmp_path, FILE.replace('"warning"', '"error"')) == 1
    assert run(tmp_path, FILE.replace("max_syscalls", "max_sys")) == 2
    assert run(tmp_path, FILE + "\n[regression]\nsyscall_threshold_percent = 5\n") == 3


def write_golden(tmp_path, name, wall_ms):
    gold = tmp_path / "golden_traces" / f"{name}.json"
    gold.parent.mkdir(exist_ok=True)
    gold.write_text(json.dumps({"wall_ns": [wall_ms * 1e6]}))
    return gold


def results(tmp_path, text):
    """Exit code and {label: (status, measured)} from the --json report."""
    cfg = tmp_path / "renacer.toml"
    cfg.write_text(text)
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps(synthetic()))  # wall 100 ms, 1000 syscalls: mmap 100, read 300
    out = tmp_path / "r.json"
    code = main(["trace", "assert", "--config", str(cfg), "--json", str(out), str(trace)])
    doc = json.loads(out.read_text())
    return code, {r["label"]: (r["status"], r["measured"], r["limit"]) for r in doc["results"]}


EVERY = """
[[assertions]]
name = "reads"
check = "syscall_count"
syscall = "read"
max_count = {reads}

[[assertions]]
name = "ran at all"
check = "min_time"
min_ms = {min_ms}

[[assertions]]
name = "total"
check = "total_time"
max_ms = 150

[[anti_patterns.rules]]
name = "futexes"
check = "syscall_count"
syscall = "futex"
max_count = 500
severity = "warning"

[[golden_traces.baselines]]
name = "synthetic"
path = "golden_traces/gold.json"
max_deviation_percent = 10

[regression]
time_threshold_percent = 30

[ci]
fail_on_severity = {sev}
fail_on_golden_deviation = {gold}
"""


def test_every_section_evaluated_against_measured_values(tmp_path):
    write_golden(tmp_path, "gold", 95)  # +5.3 %
    write_golden(tmp_path, "synthetic", 70)  # regression baseline: +42.9 %
    fmt = {"reads": 300, "min_ms": 10, "sev": '["error"]', "gold": "true"}
    code, res = results(tmp_path, EVERY.format(**fmt))
    assert code == 1
    assert res["reads"] == ("pass", 300, {"max": 300})
    assert res["ran at all"] == ("pass", 100, {"min": 10})
    assert res["total"] == ("pass", 100, {"max": 150})
    assert res["futexes"][:2] == ("warning", 600)  # a warning rule does not fail by default
    assert res["golden synthetic"][0] == "pass"
    assert abs(res["golden synthetic"][1] - 100 * 5 / 95) < 1e-9
    assert res["regression time"][0] == "fail"
    assert abs(res["regression time"][1] - 100 * 30 / 70) < 1e-9

    fmt = {"reads": 299, "min_ms": 101, "sev": '["warning", "error"]', "gold": "false"}
    write_golden(tmp_path, "gold", 80)  # +25 %: over, but fail_on_golden_deviation = false
    code, res = results(tmp_path, EVERY.format(**fmt))
    assert code == 1
    assert [res[k][0] for k in ("reads", "ran at all", "futexes", "golden synthetic")] == [
        "fail",
        "fail",
        "fail",
        "warning",
    ]


def test_missing_baseline_is_not_measured(tmp_path):
    text = '[[golden_traces.baselines]]\nname = "synthetic"\npath = "none.json"\n'
    code, res = results(tmp_path, text + "max_deviation_percent = 5\n")
    assert code == 3 and res["golden synthetic"][0] == "not measured"


# (file, a word the refusal names: the key, value or table at fault)
REFUSED = [
    ("[performance]\nbudget = 1", "budget"),
    ("[performance.budgets.x]\nmax_time = 5", "max_time"),
    ("[performance.budgets.x]", "performance.budgets.x"),
    ("[performance.budgets.x]\nmax_time_ms = -5", "max_time_ms"),
    ('[performance.budgets.x]\nmax_time_ms = "5"', "max_time_ms"),
    ('[[assertions]]\nname = "a"\ncheck = "wall"\nmax_ms = 5', "wall"),
    ('[[assertions]]\nname = "a"\ncheck = "total_time"', "max_ms"),
    ('[[assertions]]\nname = "a"\ncheck = "total_time"\nmax_ms = 5\nsyscall = "read"', "syscall"),
    (
        '[[assertions]]\nname = "a"\ncheck = "total_time"\nmax_ms = 5\napplies_to = "x*"',
        "applies_to",
    ),
    ('[[assertions]]\ncheck = "syscall_count"\nsyscall = "read"\nmax_count = 5', "name"),
    ("[anti_patterns]\nrule = 1", "rule"),
    (
        '[[anti_patterns.rules]]\nname = "r"\ncheck = "ratio"\nnumerator = "a"\nmax_ratio = 1\n'
        'severity = "error"',
        "denominator",
    ),
    (
        '[[anti_patterns.rules]]\nname = "r"\ncheck = "syscall_count"\nsyscall = "read"\n'
        'max_count = 1\nseverity = "fatal"',
        "fatal",
    ),
    (
        '[[anti_patterns.rules]]\nname = "r"\ncheck = "syscall_count"\nsyscall = "read"\n'
        "max_count = 1",
        "severity",
    ),
    ('[[anti_patterns.rules]]\nname = "r"\ncheck = "time"\nseverity = "error"', "time"),
    ('[[golden_traces.baselines]]\nname = "x"\npath = "g.json"', "max_deviation_percent"),
    (
        '[[golden_traces.baselines]]\nname = "x"\npath = "g.json"\nmax_deviation_percent = 5\n'
        "extra = 1",
        "extra",
    ),
    ("[golden_traces]\nbaseline = 1", "baseline"),
    ('[regression]\nbaseline_dir = "g"', "threshold"),
    ("[regression]\ntime_threshold = 5", "time_threshold"),
    ('[ci]\nfail_on_regression = "yes"', "fail_on_regression"),
    ("[ci]\nfail_on_everything = true", "fail_on_everything"),
    ('[ci]\nfail_on_severity = ["critical"]', "critical"),
    ('[ci]\nfail_on_severity = "error"', "fail_on_severity"),
    ('[reporting]\nformats = ["html"]', "html"),
    ('[reporting]\nformats = "json"', "formats"),
    ("[reporting]\noutput_dir = 5", "output_dir"),
    ('[reporting]\nformats = ["json"]\ntitle = "x"', "title"),
    ("[assertions]\nname = 1", "assertions"),
    ("[extras]\nx = 1", "extras"),
]


@pytest.mark.parametrize("text, word", REFUSED)
def test_refused_by_name(tmp_path, text, word, capsys):
    assert run(tmp_path, text + "\n") == 2
    err = capsys.readouterr().err
    assert "renacer.toml" in err and word in err, err
