"""renacer's [[assertion]] DSL through the CLI: real files, real exit codes, JUnit parsed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from tracefx import synthetic

from trueno.cli.main import main


def run(tmp_path, toml, *extra):
    cfg = tmp_path / "renacer.toml"
    cfg.write_text(toml)
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps(synthetic()))
    return main(["trace", "assert", "--config", str(cfg), *extra, str(trace)])


A = '[[assertion]]\nname = "a"\ntype = "{t}"\n{k}\n'


@pytest.mark.parametrize(
    "t, ok, bad",
    [
        ("critical_path", "max_duration_ms = 2", "max_duration_ms = 0.5"),
        ("span_count", "max_spans = 5", "max_spans = 4"),
        (
            "span_count",
            'max_spans = 3\nspan_name_pattern = "^add$"',
            'max_spans = 2\nspan_name_pattern = "^add$"',
        ),
        (
            "memory_usage",
            'max_bytes = 60000000\ntracking_mode = "rss"',
            'max_bytes = 1\ntracking_mode = "rss"',
        ),
        (
            "anti_pattern",
            'pattern = "GodProcess"\nthreshold = 0.9',
            'pattern = "GodProcess"\nthreshold = 0.5',
        ),
    ],
)
def test_each_type_passes_and_fails(tmp_path, t, ok, bad):
    assert run(tmp_path, A.format(t=t, k=ok)) == 0
    assert run(tmp_path, A.format(t=t, k=bad)) == 1
    assert run(tmp_path, A.format(t=t, k=bad) + "fail_on_violation = false\n") == 0
    assert run(tmp_path, A.format(t=t, k=bad) + "enabled = false\n") == 0


def test_allocations_not_measured_and_custom_refused(tmp_path):
    assert (
        run(tmp_path, A.format(t="memory_usage", k='max_bytes = 1\ntracking_mode = "allocations"'))
        == 3
    )
    assert run(tmp_path, A.format(t="custom", k='expr = "x"')) == 2
    assert run(tmp_path, A.format(t="span_count", k="max_spans = 5\nbogus = 1")) == 2


def test_junit_counts(tmp_path):
    toml = (
        A.format(t="span_count", k="max_spans = 4")
        + A.format(t="span_count", k="max_spans = 9").replace('"a"', '"b"')
        + "enabled = false\n"
    )
    junit = tmp_path / "j.xml"
    assert run(tmp_path, toml, "--junit", str(junit)) == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "1")
    assert suite.find("testcase/failure") is not None and suite.find("testcase/skipped") is not None
