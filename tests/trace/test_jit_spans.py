"""JIT work gets its own spans (category ``jit``) under the op that triggered it (issue 14)."""

from __future__ import annotations

import sys
import textwrap
from time import perf_counter_ns

import pytest
from tracefx import span, synthetic

import trueno
from trueno.trace import export, golden, recorder, renacer_dsl, rules, runner
from trueno.trace.stats import compute_times, self_times
from trueno.trace.summary import jit_line, summarize

FIRST_CALL = textwrap.dedent(
    """
    import numpy as np
    import trueno

    # 2048 elements: AUTO picks numba (rowwise ops from 256)
    x = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    trueno.rms_norm(x)  # imports numba, then loads or compiles the kernel
    trueno.rms_norm(x)  # warm: no JIT
    """
)


def traced_first_call(tmp_path, cache_dir, monkeypatch):
    prog = tmp_path / "first_call.py"
    prog.write_text(FIRST_CALL)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("TRUENO_BACKEND", raising=False)
    trace = runner.trace_command([sys.executable, str(prog)], syscalls="off", quiet=True)
    assert trace["runs"][0]["exit_code"] == 0
    return trace


def test_first_call_has_jit_children_and_the_op_keeps_its_own_time(tmp_path, monkeypatch):
    cache = tmp_path / "numba_cache"  # empty: the kernel is compiled, then loaded from it
    for expected in ("numba.compile", "numba.cache_load"):
        trace = traced_first_call(tmp_path, cache, monkeypatch)
        spans = trace["spans"]
        by_id = {s["id"]: s for s in spans}
        first, warm = [s for s in spans if s["name"] == "rms_norm"]
        jit = [s for s in spans if s["category"] == "jit"]
        assert {s["name"] for s in jit} == {"numba.import", expected}
        for s in jit:
            assert by_id[s["parent"]] is first  # under the op that triggered it
            assert first["start_ns"] <= s["start_ns"]
            assert s["start_ns"] + s["dur_ns"] <= first["start_ns"] + first["dur_ns"]
        (kernel,) = [s for s in jit if s["name"] == expected]
        assert kernel["attrs"]["kernel"].endswith("_rms_norm_rows")
        selfs = self_times(spans)
        jit_ns = sum(s["dur_ns"] for s in jit)
        # the op itself is microseconds (64x32 floats); its JIT children are 100s of ms
        assert jit_ns > 50e6 and selfs[first["id"]] < min(20e6, jit_ns / 20)
        assert selfs[warm["id"]] < 20e6 and not [s for s in spans if s["parent"] == warm["id"]]
        assert "numba.import 1x" in jit_line(summarize(spans))
        # the summary's per-call times are the op's own: both calls under 20 ms
        (row,) = [r for r in summarize(spans) if r["name"] == "rms_norm"]
        assert row["max_ns"] < 20e6 and row["total_ns"] == sum(
            selfs[s["id"]] for s in (first, warm)
        )


def test_pending_jit_spans_nest_and_go_to_the_right_parent():
    with trueno.trace.capture() as cap:
        with trueno.trace.span("region"):
            t = perf_counter_ns()
            recorder.jit_event("before", t, 10)  # before the op: stays under the region
            t0 = perf_counter_ns()
            recorder.jit_event("outer", t0 + 100, 1000)
            recorder.jit_event("inner", t0 + 200, 300)  # inside outer
            sid = recorder.claim_jit(t0)
            recorder.record_op("op", "numpy", (), "", 0, 0, t0, 5000, sid)
        recorder.jit_event("alone", perf_counter_ns(), 10)  # no op claims it
    by_name = {s["name"]: s for s in cap.spans}
    ids = {s["id"]: s["name"] for s in cap.spans}
    assert by_name["op"]["id"] == sid
    parents = {n: ids.get(by_name[n]["parent"]) for n in ("before", "outer", "inner", "alone")}
    assert parents == {"before": "region", "outer": "op", "inner": "outer", "alone": None}
    assert all(by_name[n]["category"] == "jit" for n in parents)
    assert not recorder.jit_pending


def test_counts_leave_jit_out_unless_asked():
    spans = [
        span(1, "add", 0, 1000),
        span(2, "numba.import", 10, 500, parent=1, category="jit"),
        span(3, "add", 2000, 1000),
    ]
    trace = synthetic(spans)
    assert golden.digest(trace)["counts"] == {"add": 2}
    count = lambda **kw: rules.evaluate_rule(trace, {"kind": "span_count", **kw}).measured  # noqa: E731
    assert count(max=9) == 2 and count(max=9, category="jit") == 1
    rows = summarize(spans)
    assert jit_line(rows) == "jit (start-up, not compute): 500ns: numba.import 1x 500ns"
    assert jit_line(summarize(spans[:1])) is None


@pytest.mark.parametrize("on", [False, True])
def test_no_pending_spans_without_jit(on):
    x = trueno.trace.capture() if on else None
    if x is None:
        trueno.add([1.0], [2.0])
    else:
        with x:
            trueno.add([1.0], [2.0])
    assert not recorder.jit_pending


def nested_jit_trace():
    """knn (2 ms) -> rms_norm (1.5 ms) -> numba.import (1 ms) -> numba.compile (0.4 ms)."""
    return synthetic(
        [
            span(1, "knn", 0, 2_000_000, category="example", nbytes=0, flops=0),
            span(2, "rms_norm", 100_000, 1_500_000, parent=1, nbytes=8_000, flops=0),
            span(3, "numba.import", 200_000, 1_000_000, parent=2, category="jit"),
            span(4, "numba.compile", 300_000, 400_000, parent=3, category="jit"),
            span(5, "rms_norm", 1_700_000, 100_000, parent=1, nbytes=8_000, flops=0),
        ]
    )


def test_budgets_and_summary_take_jit_time_out_of_the_ops():
    trace = nested_jit_trace()
    # JIT inside, at any depth, is taken out once (the inner compile is inside the import)
    assert compute_times(trace["spans"]) == {1: 1_000_000, 2: 500_000, 3: 1_000_000,
                                             4: 400_000, 5: 100_000}  # fmt: skip
    rows = {r["name"]: r for r in summarize(trace["spans"])}
    assert rows["rms_norm"]["total_ns"] == 600_000 and rows["rms_norm"]["max_ns"] == 500_000
    assert rows["knn"]["total_ns"] == 1_000_000
    assert rows["rms_norm"]["gbps"] == 16_000 / 600_000
    latency = {"kind": "op_latency", "op": "rms_norm", "stat": "max", "max_us": 600}
    res = rules.evaluate_rule(trace, latency)
    assert (res.status, res.measured) == ("pass", 500)  # 1500 us with the JIT in it
    res = rules.evaluate_rule(trace, {"kind": "throughput", "op": "rms_norm", "min_gbps": 0.02})
    assert res.status == "pass" and res.message.startswith("0.02667")
    # the JIT time itself is budgeted through its spans: count them, or bound their path
    assert (
        rules.evaluate_rule(trace, {"kind": "span_count", "category": "jit", "max": 2}).measured
        == 2
    )
    # the flamegraph's stacks hold the JIT frames under the op, apart from its own time
    stacks = export.parse_folded(export.folded(trace))
    assert stacks["knn;rms_norm;numba.import;numba.compile"] == 400_000
    assert stacks["knn;rms_norm;numba.import"] == 600_000 and stacks["knn;rms_norm"] == 600_000
    # a JIT span (numba.import: 0.6 ms self) is start-up, not a "god process": rms_norm's 0.5 ms
    assert renacer_dsl.god_process_share(trace) == 500_000 / 2_000_000
