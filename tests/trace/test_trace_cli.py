"""`trueno trace ...` commands end to end, with their exit codes."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET

import pytest
from tracefx import make_run, span, synthetic

from trueno.cli.main import main
from trueno.trace import export, schema


@pytest.fixture()
def trace_file(tmp_path, real_trace):
    path = tmp_path / "t.json"
    schema.dump(real_trace, path)
    return path


def test_run_writes_trace_not_stdout(tmp_path, program, capsys):
    out = tmp_path / "run.json"
    code = main(
        [
            "trace",
            "run",
            "-o",
            str(out),
            "--quiet",
            "--syscalls",
            "off",
            "--",
            sys.executable,
            str(program),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # reports go to stderr, trace data to the file
    assert "wrote" in captured.err
    trace = schema.load(out)
    assert trace["name"] == "traced_program" and trace["runs"][0]["exit_code"] == 0


def test_run_returns_the_program_exit_code(tmp_path):
    prog = tmp_path / "bad.py"
    prog.write_text("raise SystemExit(5)\n")
    assert (
        main(
            [
                "trace",
                "run",
                "-o",
                str(tmp_path / "b.json"),
                "--syscalls",
                "off",
                "--quiet",
                "--",
                str(prog),
            ]
        )
        == 5
    )


def test_summary_tables(trace_file, capsys):
    assert main(["trace", "summary", str(trace_file)]) == 0
    out = capsys.readouterr().out
    assert "add" in out and "p95" in out and "GB/s" in out and "numpy" in out
    assert "syscalls (source: proc)" in out
    assert main(["trace", "summary", str(trace_file), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["ops"]}
    assert rows["add"]["calls"] == 40  # 10 adds x (parent + child) x 2 runs


def test_export_chrome_folded_otlp_json(trace_file, tmp_path):
    for kind, name in (("chrome", "c.json"), ("folded", "f.txt"), ("otlp-json", "o.json")):
        assert (
            main(["trace", "export", str(trace_file), "--to", kind, "-o", str(tmp_path / name)])
            == 0
        )
    chrome = json.loads((tmp_path / "c.json").read_text())
    assert any(e["name"] == "exp" for e in chrome["traceEvents"])
    stacks = export.parse_folded((tmp_path / "f.txt").read_text())
    assert "outer;inner;exp" in stacks and stacks["outer;inner;exp"] > 0
    otlp = json.loads((tmp_path / "o.json").read_text())
    assert otlp["resourceSpans"][0]["scopeSpans"][0]["spans"]


def test_flamegraph_svg(trace_file, tmp_path):
    svg = tmp_path / "flame.svg"
    assert main(["trace", "flamegraph", str(trace_file), "-o", str(svg)]) == 0
    root = ET.parse(svg).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(ns + "title")]
    assert any(t.startswith("exp ") for t in titles) and any(t.startswith("all ") for t in titles)
    rects = {
        g.find(ns + "title").text.split(" (")[0]: float(g.find(ns + "rect").get("width"))
        for g in root.iter(ns + "g")
    }
    assert rects["outer"] >= rects["inner"] >= rects["exp"] > 0  # width = inclusive time


def write(tmp_path, name, trace):
    path = tmp_path / name
    schema.dump(trace, path)
    return str(path)


def test_assert_exit_codes(tmp_path, capsys):
    trace = write(tmp_path, "t.json", synthetic())
    ok = tmp_path / "ok.toml"
    ok.write_text('[[rules]]\nkind = "wall_time"\nmax_ms = 1000\n')
    assert main(["trace", "assert", "--config", str(ok), trace]) == 0
    tight = tmp_path / "tight.toml"  # a deliberately violated budget
    tight.write_text('[[rules]]\nkind = "wall_time"\nmax_ms = 1\n')
    assert main(["trace", "assert", "--config", str(tight), trace]) == 1
    assert "FAIL" in capsys.readouterr().out
    unmeasured = write(tmp_path, "u.json", synthetic(runs=[{"dropped": 0}]))
    assert main(["trace", "assert", "--config", str(ok), unmeasured]) == 3
    assert "NOT MEASURED" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nkind = "vibes"\n')
    assert main(["trace", "assert", "--config", str(bad), trace]) == 2
    assert main(["trace", "assert", "--config", str(tmp_path / "none.toml"), trace]) == 2
    assert main(["trace", "assert", "--config", str(ok)]) == 2  # nothing to check


def test_assert_targets_and_json(tmp_path, capsys):
    cfg = tmp_path / "r.toml"
    cfg.write_text(
        '[targets.synthetic]\n[[targets.synthetic.rules]]\nkind = "span_count"\n'
        'op = "add"\nmin = 3\nmax = 3\n'
    )
    trace = write(tmp_path, "t.json", synthetic())
    assert main(["trace", "assert", "--config", str(cfg), "--json", trace]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "synthetic" and report["results"][0]["status"] == "pass"
    assert main(["trace", "assert", "--config", str(cfg), "--target", "other", trace]) == 2


def test_assert_runs_a_command(tmp_path, program):
    cfg = tmp_path / "r.toml"
    cfg.write_text(
        '[[rules]]\nkind = "span_count"\nop = "add"\nmin = 20\nmax = 20\n'
        '[[rules]]\nkind = "wall_time"\nmax_ms = 60000\n'
    )
    assert (
        main(
            [
                "trace",
                "assert",
                "--config",
                str(cfg),
                "--syscalls",
                "off",
                "--",
                sys.executable,
                str(program),
                "child",
            ]
        )
        == 0
    )


def runs_trace(scale: float, n: int = 6):
    spans, sid = [], 1
    for run in range(n):
        for i in range(5):
            dur = int((1000 + 37 * ((run * 5 + i) % 7)) * scale)
            spans.append(span(sid, "add", i * 10_000, dur, run=run))
            sid += 1
            spans.append(span(sid, "sum", i * 10_000 + 5000, 2000 + run, run=run))
            sid += 1
    return synthetic(spans, runs=[make_run(wall_ns=100_000_000 + r) for r in range(n)])


def test_compare_regression_improvement_and_noise(tmp_path, capsys):
    base = write(tmp_path, "base.json", runs_trace(1.0))
    slower = write(tmp_path, "slow.json", runs_trace(3.0))
    faster = write(tmp_path, "fast.json", runs_trace(0.3))
    assert main(["trace", "compare", base, base]) == 0
    assert main(["trace", "compare", base, slower]) == 1
    md = capsys.readouterr().out
    assert "| add |" in md and "regression" in md and "1 regression(s)" in md
    assert main(["trace", "compare", base, faster, "--format", "json"]) == 0  # improvement
    report = json.loads(capsys.readouterr().out)
    verdicts = {r["op"]: r["verdict"] for r in report["ops"]}
    assert verdicts["add"] == "improvement" and verdicts["sum"] == "no change"
    assert report["samples"] == "per-run self time"


def test_compare_small_effect_is_not_a_regression(tmp_path):
    base = write(tmp_path, "base.json", runs_trace(1.0))
    cur = write(tmp_path, "cur.json", runs_trace(1.05))  # significant but under 10 %
    assert main(["trace", "compare", base, cur]) == 0


def test_golden_capture_refuses_overwrite_and_check(tmp_path, program, capsys, monkeypatch):
    d = str(tmp_path / "golden")
    cmd = ["--", sys.executable, str(program)]
    base = ["trace", "golden", "capture", "prog", "--dir", d, "--repeat", "2", "--syscalls", "off"]
    assert main(base + cmd) == 0
    assert (tmp_path / "golden" / "prog.summary.txt").read_text().count("add") >= 1
    assert main(base + cmd) == 1  # exists: refuses, shows the (empty) diff
    assert "structure unchanged" in capsys.readouterr().out
    assert main(base + ["--", sys.executable, str(program), "child"]) == 1
    out = capsys.readouterr().out
    assert "+count add 20" in out and "-count add 10" in out  # the diff
    check = ["trace", "golden", "check", "--dir", d, "--repeat", "2", "--syscalls", "off"]
    assert main(check) == 0
    assert main(base + ["--update", "--", sys.executable, str(program), "child"]) == 0
    gold = json.loads((tmp_path / "golden" / "prog.json").read_text())
    gold["counts"]["add"] = 999  # a golden the program no longer matches
    (tmp_path / "golden" / "prog.json").write_text(json.dumps(gold))
    assert main(check + ["prog"]) == 1
    assert "structure differs" in capsys.readouterr().out


def test_golden_structure_is_compared_like_with_like():
    from trueno.trace import golden

    trace = synthetic()
    gold = golden.digest(trace)
    changed = synthetic(synthetic()["spans"][:-1])
    assert not golden.compare(gold, changed)["ok"]
    changed["fingerprint"] = {**changed["fingerprint"], "gpus": ["GPU 0: NVIDIA H100"]}
    report = golden.compare(gold, changed)  # a GPU machine against a CPU golden
    assert report["ok"] and "structure not compared" in report["notes"][0]
    assert not report["timings_compared"]


def test_golden_check_also_evaluates_the_budgets(tmp_path, program, capsys):
    d = tmp_path / "golden"
    base = [
        "trace",
        "golden",
        "capture",
        "prog",
        "--dir",
        str(d),
        "--repeat",
        "1",
        "--syscalls",
        "off",
        "--",
        sys.executable,
        str(program),
    ]
    assert main(base) == 0
    check = ["trace", "golden", "check", "--dir", str(d), "--repeat", "1", "--syscalls", "off"]
    config = tmp_path / "renacer.toml"  # beside the golden folder: picked up by default
    config.write_text(
        'version = 1\n[targets.prog]\ncommand = ["x.py"]\n'
        '[[targets.prog.rules]]\nkind = "wall_time"\nmax_ms = 600000\n'
    )
    assert main(check) == 0
    assert "1/1 budgets pass" in capsys.readouterr().out
    config.write_text(
        'version = 1\n[targets.prog]\ncommand = ["x.py"]\n'
        '[[targets.prog.rules]]\nkind = "wall_time"\nmax_ms = 0.001\n'
    )
    assert main(check) == 1  # same golden structure, but a budget is violated
    out = capsys.readouterr().out
    assert "FAILED" in out and "budget wall_time: fail" in out and "max 0.001ms" in out


def test_golden_check_warms_each_command_untraced_first(tmp_path):
    """One untraced run before the traced ones (numba compiles there, not inside a budget's
    runs); ``--cold`` skips it."""
    runs = tmp_path / "runs.txt"
    prog = tmp_path / "count.py"
    prog.write_text(
        "import os, sys\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write('traced\\n' if os.environ.get('TRUENO_TRACE') else 'untraced\\n')\n"
    )
    d = tmp_path / "golden"
    capture = ["trace", "golden", "capture", "count", "--dir", str(d), "--repeat", "1",
               "--syscalls", "off", "--", sys.executable, str(prog), str(runs)]  # fmt: skip
    assert main(capture) == 0
    runs.write_text("")
    check = ["trace", "golden", "check", "--dir", str(d), "--repeat", "2", "--syscalls", "off"]
    assert main(check) == 0
    assert runs.read_text().split() == ["untraced", "traced", "traced"]
    runs.write_text("")
    assert main([*check, "--cold"]) == 0
    assert runs.read_text().split() == ["traced", "traced"]
