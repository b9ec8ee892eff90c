"""Exporters: trace JSON, Chrome trace events (Perfetto), folded stacks, OTLP/JSON.

All of them are pure functions of a trace dict (see :mod:`trueno.trace.schema`); none of them
imports opentelemetry (the wire exporter lives in :mod:`trueno.trace.otlp`).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path

from trueno.trace import schema
from trueno.trace.stats import self_times


def write_json(spans: list[dict], path, dropped: int = 0, epoch_ns: int | None = None) -> None:
    trace = schema.make_trace(spans, [{"dropped": dropped}], name="capture", epoch_ns=epoch_ns)
    schema.dump(trace, path)


def write_chrome(spans: list[dict], path) -> None:
    trace = schema.make_trace(spans, [{}], name="capture", fp={})
    Path(path).write_text(json.dumps(chrome(trace)))


def _args(s: dict) -> dict:
    args = {k: s[k] for k in ("backend", "dtype", "bytes", "flops") if s.get(k)}
    if s.get("shape"):
        args["shape"] = "x".join(map(str, s["shape"]))
    args.update(s.get("attrs") or {})
    return args


def chrome(trace: dict) -> dict:
    """Chrome trace-event JSON (complete "X" events, microseconds), loadable in Perfetto.

    Processes are runs (or traced processes), threads keep their ids; nesting comes from the
    time containment of spans on one thread, which the recorder guarantees.
    """
    events = []
    tids: dict = {}
    procs: dict = {}  # pid -> process label (merged traces: one track per worker)
    for s in trace["spans"]:
        pid = s.get("pid", 0) * 1000 + s.get("run", 0)
        tid = tids.setdefault((pid, s["thread"]), len(tids) + 1)
        if "process" in s and pid not in procs:
            procs[pid] = f"{s['process']} (pid {s.get('pid')} on {s.get('host', '?')})"
        events.append(
            {
                "name": s["name"],
                "cat": s.get("category", "op"),
                "ph": "X",
                "ts": s["start_ns"] / 1000.0,
                "dur": s["dur_ns"] / 1000.0,
                "pid": pid,
                "tid": tid,
                "args": _args(s),
            }
        )
    for (pid, thread), tid in tids.items():
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "pid": pid,
                "tid": tid,
                "args": {"name": f"thread {thread}"},
            }
        )
    for pid, label in procs.items():
        events.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": label}})
    events.sort(key=lambda e: (e.get("ts", -1), -e.get("dur", 0)))
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"trueno_trace_version": trace.get("version"), "name": trace.get("name", "")},
    }


def folded(trace: dict, run: int | None = 0) -> str:
    """Folded stacks (``root;child;leaf <self ns>``) for flamegraph tools, one line per stack."""
    spans = trace["spans"] if run is None else schema.spans_of_run(trace, run)
    by_id = {s["id"]: s for s in spans}
    selfs = self_times(spans)
    weights: dict[str, int] = defaultdict(int)
    for s in spans:
        names, cur, guard = [], s, 0
        while cur is not None and guard < 256:
            names.append(cur["name"].replace(";", ":").replace(" ", "_"))
            cur = by_id.get(cur.get("parent"))
            guard += 1
        weights[";".join(reversed(names))] += selfs[s["id"]]
    return "".join(f"{stack} {w}\n" for stack, w in sorted(weights.items()) if w > 0)


def parse_folded(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.strip():
            stack, _, weight = line.rpartition(" ")
            out[stack] = out.get(stack, 0) + int(weight)
    return out


def trace_ids(trace: dict) -> tuple[str, str | None]:
    """(trace id, remote parent span id) in hex: from W3C TRACEPARENT when set, else new."""
    parent = parse_traceparent(os.environ.get("TRACEPARENT", ""))
    if parent:
        return parent
    return os.urandom(16).hex(), None


def parse_traceparent(value: str) -> tuple[str, str] | None:
    """``00-<32 hex trace id>-<16 hex span id>-<flags>`` -> (trace id, span id), or None."""
    parts = value.strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    if set(parts[1]) == {"0"} or set(parts[2]) == {"0"}:
        return None
    return parts[1], parts[2]


def span_epoch_ns(trace: dict, s: dict) -> tuple[int, int]:
    """Real (epoch ns) start and end of a span."""
    runs = trace.get("runs") or []
    run = s.get("run", 0)
    base = (runs[run].get("epoch_ns") if run < len(runs) else None) or trace.get("epoch_ns")
    base = base or time.time_ns()
    start = base + s["start_ns"]
    return start, start + s["dur_ns"]


def attributes(s: dict) -> dict:
    """A span's attributes under the ``trueno.*`` namespace."""
    out = {"trueno.category": s.get("category", ""), "trueno.thread": s["thread"]}
    for key in ("backend", "dtype", "bytes", "flops", "run", "pid", "host", "process"):
        if s.get(key) not in (None, "", 0):
            out[f"trueno.{key}"] = s[key]
    if s.get("shape"):
        out["trueno.shape"] = "x".join(map(str, s["shape"]))
    for k, v in (s.get("attrs") or {}).items():
        out[f"trueno.attr.{k}"] = v
    return out


def _any_value(v) -> dict:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def otlp_json(trace: dict, service_name: str = "trueno") -> dict:
    """OTLP/JSON (ExportTraceServiceRequest) with real parents and times."""
    trace_id, remote_parent = trace_ids(trace)
    spans = []
    for s in trace["spans"]:
        start, end = span_epoch_ns(trace, s)
        parent = f"{s['parent']:016x}" if s.get("parent") else (remote_parent or "")
        spans.append(
            {
                "traceId": trace_id,
                "spanId": f"{s['id']:016x}",
                "parentSpanId": parent,
                "name": s["name"],
                "kind": 1,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(end),
                "attributes": [
                    {"key": k, "value": _any_value(v)} for k, v in attributes(s).items()
                ],
            }
        )
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service_name}}]}
    return {
        "resourceSpans": [
            {
                "resource": resource,
                "scopeSpans": [{"scope": {"name": "trueno.trace"}, "spans": spans}],
            }
        ]
    }
