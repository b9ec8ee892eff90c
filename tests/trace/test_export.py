"""Exporters parsed back: trace JSON, Chrome trace events, folded stacks, OTLP/JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tracefx import synthetic

import trueno
from trueno.errors import ConfigError
from trueno.trace import export, schema
from trueno.trace.stats import self_times


def test_capture_to_json_round_trips(tmp_path):
    a = np.ones(64, np.float32)
    with trueno.trace.capture() as cap:
        with trueno.trace.span("step"):
            trueno.add(a, a)
    cap.to_json(tmp_path / "t.json")
    trace = schema.load(tmp_path / "t.json")
    assert trace["version"] == schema.VERSION
    assert [s["name"] for s in trace["spans"]] == ["step", "add"]
    assert set(schema.SPAN_KEYS) <= set(trace["spans"][1])
    fp = trace["fingerprint"]
    assert fp["cpu"] and "sse2" in fp["isa"] and fp["numpy"] == np.__version__
    assert fp["logical_cores"] >= 1
    rows = cap.summary()
    assert {r["name"] for r in rows} == {"step", "add"}


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something-else"}')
    with pytest.raises(ConfigError, match="expected a trueno.trace file"):
        schema.load(bad)
    bad.write_text("not json")
    with pytest.raises(ConfigError, match="not JSON"):
        schema.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        schema.load(tmp_path / "missing.json")


def test_chrome_events_nest_per_thread(tmp_path):
    a = np.ones(64, np.float32)
    with trueno.trace.capture() as cap:
        with trueno.trace.span("outer"):
            trueno.add(a, a)
            trueno.mul(a, a)
    cap.to_chrome(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    events = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert {e["name"] for e in events} == {"outer", "add", "mul"}
    outer = next(e for e in events if e["name"] == "outer")
    for e in events:
        assert e["tid"] == outer["tid"] and e["pid"] == outer["pid"]
        assert outer["ts"] <= e["ts"] and e["ts"] + e["dur"] <= outer["ts"] + outer["dur"] + 1e-3
    add = next(e for e in events if e["name"] == "add")
    assert add["args"]["backend"] == "numpy" and add["args"]["shape"] == "64"
    meta = [e for e in data["traceEvents"] if e["ph"] == "M"]
    assert meta and meta[0]["name"] == "thread_name"


def test_folded_weights_are_self_times():
    trace = synthetic()
    stacks = export.parse_folded(export.folded(trace))
    assert stacks == {"layer": 1_000_000 - 803_000, "layer;add": 3_000, "layer;matmul": 800_000}
    assert sum(stacks.values()) == sum(self_times(trace["spans"]).values())


def test_otlp_json_has_real_parents_and_times(monkeypatch):
    monkeypatch.delenv("TRACEPARENT", raising=False)
    trace = synthetic()
    doc = export.otlp_json(trace, "svc")
    rs = doc["resourceSpans"][0]
    assert rs["resource"]["attributes"][0] == {
        "key": "service.name",
        "value": {"stringValue": "svc"},
    }
    spans = rs["scopeSpans"][0]["spans"]
    by_name = {}
    for s in spans:
        by_name.setdefault(s["name"], s)
    layer, matmul = by_name["layer"], by_name["matmul"]
    assert layer["parentSpanId"] == "" and matmul["parentSpanId"] == layer["spanId"]
    assert len({s["traceId"] for s in spans}) == 1
    assert int(matmul["startTimeUnixNano"]) == trace["epoch_ns"] + 40_000
    assert int(matmul["endTimeUnixNano"]) - int(matmul["startTimeUnixNano"]) == 800_000
    keys = {a["key"] for a in matmul["attributes"]}
    assert {"trueno.backend", "trueno.shape", "trueno.flops"} <= keys
    assert all(k.startswith("trueno.") for k in keys)


def test_traceparent_is_honoured(monkeypatch):
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    monkeypatch.setenv("TRACEPARENT", f"00-{tid}-{sid}-01")
    spans = export.otlp_json(synthetic())["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert {s["traceId"] for s in spans} == {tid}
    assert next(s for s in spans if s["name"] == "layer")["parentSpanId"] == sid
    assert export.parse_traceparent("00-" + "0" * 32 + "-" + sid + "-01") is None
    assert export.parse_traceparent("garbage") is None


def test_python_api_run_load_check(tmp_path, program):
    import sys

    trace = trueno.trace.run([sys.executable, str(program)], syscalls="off", quiet=True)
    schema.dump(trace, tmp_path / "t.json")
    again = trueno.trace.load(tmp_path / "t.json")
    cfg = tmp_path / "r.toml"
    cfg.write_text('[[rules]]\nkind = "span_count"\nop = "add"\nmin = 10\nmax = 10\n')
    code, results = trueno.trace.check(again, cfg)
    assert code == 0 and results[0].measured == 10
