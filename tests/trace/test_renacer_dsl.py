"""renacer's [[assertion]] DSL through the CLI: real files, real exit codes, JUnit parsed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from tracefx import make_run, span, synthetic

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


def run_trace(tmp_path, toml, trace, *extra):
    cfg = tmp_path / "renacer.toml"
    cfg.write_text(toml)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(trace))
    return main(["trace", "assert", "--config", str(cfg), *extra, str(path)])


def loop_trace(n):
    """``n`` back-to-back 5 us adds under one region, then one 900 us matmul."""
    spans = [span(1, "region", 0, 1_000_000, category="region", nbytes=0, flops=0)]
    spans += [span(2 + i, "add", 1000 + 10_000 * i, 5_000, parent=1) for i in range(n)]
    spans.append(span(2 + n, "matmul", 1000 + 10_000 * n, 900_000, parent=1))
    return synthetic(spans)


def test_tight_loop_share(tmp_path):
    anti = A.format(t="anti_pattern", k='pattern = "TightLoop"\nthreshold = {}')
    # 12 looped adds of 13 ops: share 0.923; 9 adds are below the 10-repeat loop length: 0
    assert run_trace(tmp_path, anti.format(0.95), loop_trace(12)) == 0
    assert run_trace(tmp_path, anti.format(0.9), loop_trace(12)) == 1
    assert run_trace(tmp_path, anti.format(0.0), loop_trace(9)) == 0
    md = tmp_path / "r.md"
    assert run_trace(tmp_path, anti.format(0.5), loop_trace(12), "--markdown", str(md)) == 1
    row = next(line for line in md.read_text().splitlines() if line.startswith("| a |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["assertion.anti_pattern", "fail", f"{12 / 13:.4g}", "max 0.5"]


def pcie_trace(copy_us, kernel_us):
    spans = [
        span(1, "to_device", 0, copy_us * 1000, category="transfer", backend="cupy"),
        span(2, "matmul", copy_us * 1000, kernel_us * 1000, backend="cupy"),
        span(3, "to_host", (copy_us + kernel_us) * 1000, copy_us * 1000, category="transfer"),
        span(4, "add", 10**7, 50_000, backend="numpy"),  # CPU op: not GPU kernel time
    ]
    return synthetic(spans)


def test_pcie_bottleneck_share(tmp_path):
    anti = A.format(t="anti_pattern", k='pattern = "PcieBottleneck"\nthreshold = 0.7')
    assert run_trace(tmp_path, anti, pcie_trace(400, 100)) == 1  # 800 / 900 = 0.89
    assert run_trace(tmp_path, anti, pcie_trace(100, 400)) == 0  # 200 / 600 = 0.33
    js = tmp_path / "r.json"
    assert run_trace(tmp_path, anti, pcie_trace(400, 100), "--json", str(js)) == 1
    (res,) = json.loads(js.read_text())["results"]
    assert res["status"] == "fail" and abs(res["measured"] - 800 / 900) < 1e-9


def test_not_measured_is_exit_3(tmp_path):
    no_spans = synthetic([], runs=[make_run(dropped=None, syscalls=None, max_rss_bytes=None)])
    for t, k in [
        ("critical_path", "max_duration_ms = 5"),
        ("span_count", "max_spans = 5"),
        ("memory_usage", 'max_bytes = 10\ntracking_mode = "rss"'),
        ("memory_usage", 'max_bytes = 10\ntracking_mode = "allocations"'),
        ("anti_pattern", 'pattern = "GodProcess"\nthreshold = 0.5'),
    ]:
        assert run_trace(tmp_path, A.format(t=t, k=k), no_spans) == 3, (t, k)
    pattern = 'max_duration_ms = 5\ntrace_name_pattern = "^nothing$"'
    assert run(tmp_path, A.format(t="critical_path", k=pattern)) == 3
    # a warning-only assertion is still "not measured", never a pass
    warn_only = A.format(t="span_count", k="max_spans = 5") + "fail_on_violation = false\n"
    assert run_trace(tmp_path, warn_only, no_spans) == 3
    assert run_trace(tmp_path, warn_only + "enabled = false\n", no_spans) == 0  # skipped


def test_allocations_from_the_run_record(tmp_path):
    mem = A.format(t="memory_usage", k='max_bytes = {}\ntracking_mode = "allocations"')
    sc = make_run()["syscalls"] | {"mapped_bytes": {"mmap": 3000, "brk": 1000, "total": 4000}}
    trace = synthetic(runs=[make_run(syscalls=sc)])
    assert run_trace(tmp_path, mem.format(4000), trace) == 0
    assert run_trace(tmp_path, mem.format(3999), trace) == 1
    # renacer's default tracking_mode is allocations
    default = A.format(t="memory_usage", k="max_bytes = {}")
    assert run_trace(tmp_path, default.format(4000), trace) == 0
    assert run_trace(tmp_path, default.format(3999), trace) == 1
    assert run(tmp_path, default.format(4000)) == 3  # a trace without strace's mapped bytes


def test_process_name_pattern(tmp_path):
    # a dask-style trace: the client's region (2 ms, mostly waiting), a worker's two ops
    spans = [
        span(1, "compute", 0, 2_000_000, category="region", process="client"),
        span(2, "add", 10_000, 200_000, parent=1, process="client"),
        span(3, "matmul", 0, 500_000, thread=2, process="worker-1"),
        span(4, "add", 500_000, 500_000, thread=2, process="worker-1"),
    ]
    trace = synthetic(spans)
    god = A.format(t="anti_pattern", k='pattern = "GodProcess"\nthreshold = 0.85')
    js = tmp_path / "r.json"
    # the whole trace: the client's region, 1.8 ms self of the 2 ms critical thread
    assert run_trace(tmp_path, god, trace, "--json", str(js)) == 1
    assert json.loads(js.read_text())["results"][0]["measured"] == 0.9
    assert run_trace(tmp_path, god + 'process_name_pattern = "^client$"\n', trace) == 1
    # the worker alone: 0.5 ms of its 1 ms
    worker = god + 'process_name_pattern = "^worker"\n'
    assert run_trace(tmp_path, worker, trace, "--json", str(js)) == 0
    assert json.loads(js.read_text())["results"][0]["measured"] == 0.5
    # without a process label a span is the trace's own process (its name)
    assert run_trace(tmp_path, god + 'process_name_pattern = "^synthetic$"\n', synthetic()) == 0
    assert run_trace(tmp_path, god + 'process_name_pattern = "^nobody$"\n', trace) == 3


@pytest.mark.parametrize(
    "bad",
    [
        'type = "span_count"\nmax_spans = -1',
        'type = "span_count"\nmax_spans = "5"',
        'type = "span_count"\nmax_spans = 5\nenabled = "no"',
        'type = "span_count"\nmax_spans = 5\nspan_name_pattern = "("',
        'type = "memory_usage"\nmax_bytes = 5\ntracking_mode = "heap"',
        'type = "anti_pattern"\npattern = "TightLoop"\nthreshold = 0.5\nprocess_name_pattern = "("',
        'type = "anti_pattern"\npattern = "GodObject"\nthreshold = 0.5',
        'type = "anti_pattern"\npattern = "TightLoop"\nthreshold = 1.5',
        'type = "latency"\nmax_ms = 5',
    ],
)
def test_bad_assertions_refused(tmp_path, bad):
    assert run(tmp_path, f'[[assertion]]\nname = "a"\n{bad}\n') == 2
