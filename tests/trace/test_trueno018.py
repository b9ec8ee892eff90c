"""trueno 0.18's published renacer.toml layout through the CLI: evaluated, refused by name."""

from __future__ import annotations

import json

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
