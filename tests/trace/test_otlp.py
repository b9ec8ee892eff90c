"""OTLP over the wire: a real OTLP/HTTP receiver (http.server on 127.0.0.1) and a real gRPC
TraceService decode the protobuf payload; a collector that is down or slow costs at most the
bounded flush."""

from __future__ import annotations

import socket
import sys
import time
from concurrent import futures

import pytest
from tracefx import synthetic

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: E402
from otlp_receiver import Receiver  # noqa: E402

from trueno.cli.main import main  # noqa: E402
from trueno.trace import otlp, schema  # noqa: E402


def check_tree(received, trace, service="trueno"):
    spans = {s.name: s for _, s in received if s.name != "add"}
    adds = [s for _, s in received if s.name == "add"]
    assert len(received) == len(trace["spans"])
    assert all(attrs["service.name"] == service for attrs, _ in received)
    layer, matmul = spans["layer"], spans["matmul"]
    assert layer.parent_span_id == b"" and matmul.parent_span_id == layer.span_id
    assert all(a.parent_span_id == layer.span_id for a in adds)
    assert len({s.trace_id for _, s in received}) == 1
    assert matmul.start_time_unix_nano == trace["epoch_ns"] + 40_000
    assert matmul.end_time_unix_nano - matmul.start_time_unix_nano == 800_000
    keys = {a.key for a in matmul.attributes}
    assert {"trueno.backend", "trueno.category", "trueno.flops"} <= keys


def test_http_round_trip_decodes_span_tree(monkeypatch):
    monkeypatch.delenv("TRACEPARENT", raising=False)
    trace = synthetic()
    with Receiver() as rx:
        res = otlp.send(trace, rx.url, "http", timeout=5.0, service_name="trueno-test")
    assert res["ok"], res
    path, ctype, _ = rx.requests[0]
    assert path == "/v1/traces" and ctype == "application/x-protobuf"
    check_tree(rx.spans(), trace, "trueno-test")


def test_traceparent_and_env_endpoint_through_cli(tmp_path, monkeypatch):
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    monkeypatch.setenv("TRACEPARENT", f"00-{tid}-{sid}-01")
    path = tmp_path / "t.json"
    schema.dump(synthetic(), path)
    with Receiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.url)
        assert main(["trace", "export", str(path), "--to", "otlp"]) == 0
    received = rx.spans()
    assert {s.trace_id.hex() for _, s in received} == {tid}
    layer = next(s for _, s in received if s.name == "layer")
    assert layer.parent_span_id.hex() == sid


def trace_run(tmp_path, program, endpoint: str, *options: str) -> int:
    """``trueno trace run`` of ``program`` exporting to the OTLP ``endpoint``."""
    out = str(tmp_path / "t.json")
    cmd = ["--", sys.executable, str(program)]
    return main(["trace", "run", "-o", out, "--quiet", "--syscalls", "off",
                 "--otlp-endpoint", endpoint, *options, *cmd])  # fmt: skip


def test_real_program_spans_over_http(tmp_path, program, monkeypatch):
    monkeypatch.delenv("TRACEPARENT", raising=False)
    with Receiver() as rx:
        code = trace_run(tmp_path, program, rx.url)
    assert code == 0
    received = rx.spans()
    by_id = {s.span_id: s for _, s in received}
    exp = next(s for _, s in received if s.name == "exp")
    assert by_id[exp.parent_span_id].name == "inner"
    assert by_id[by_id[exp.parent_span_id].parent_span_id].name == "outer"
    now = time.time_ns()
    assert now - 120e9 < exp.start_time_unix_nano < exp.end_time_unix_nano <= now


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_collector_down_is_bounded(tmp_path, program):
    t0 = time.monotonic()
    code = trace_run(tmp_path, program, f"http://127.0.0.1:{closed_port()}", "--otlp-timeout", "1")
    assert code == 0  # the program's exit code, not the exporter's
    assert time.monotonic() - t0 < 30
    res = otlp.send(synthetic(), f"http://127.0.0.1:{closed_port()}", timeout=1.0)
    assert not res["ok"] and res["error"]


def test_slow_collector_is_bounded():
    with Receiver(delay=5.0) as rx:
        t0 = time.monotonic()
        res = otlp.send(synthetic(), rx.url, "http", timeout=1.0)
        elapsed = time.monotonic() - t0
    assert not res["ok"] and elapsed < 3.5, (res, elapsed)


def test_grpc_round_trip(monkeypatch):
    grpc = pytest.importorskip("grpc")
    pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc")
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    monkeypatch.delenv("TRACEPARENT", raising=False)
    got: list = []

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802
            got.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        trace = synthetic()
        res = otlp.send(trace, f"127.0.0.1:{port}", "grpc", timeout=5.0)
    finally:
        server.stop(0)
    assert res["ok"], res
    received = []
    for req in got:
        for rs in req.resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            received += [(attrs, s) for ss in rs.scope_spans for s in ss.spans]
    check_tree(received, trace)


def test_endpoint_resolution(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert otlp.resolve_endpoint(None, "http") == "http://collector:4318/v1/traces"
    assert otlp.resolve_endpoint("localhost:4317", "grpc") == "localhost:4317"
    assert otlp.resolve_endpoint("http://h:9/v1/traces", "http") == "http://h:9/v1/traces"


def run_env_traced(url: str, timeout: str = "1", prelude: str = ""):
    import os
    import subprocess
    import sys

    code = "import numpy as np, trueno; trueno.add(np.ones(3, np.float32), np.ones(3, np.float32))"
    code = prelude + code
    env = {
        **os.environ,
        "TRUENO_TRACE": "1",
        "TRUENO_TRACE_OTLP": "http",
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "TRUENO_TRACE_OTLP_TIMEOUT": timeout,
    }
    for key in ("TRUENO_TRACE_PARTS", "TRUENO_TRACE_OUTPUT", "TRACEPARENT"):
        env.pop(key, None)
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    return res, time.monotonic() - t0


def test_in_process_export_at_exit():
    with Receiver() as rx:
        res, _ = run_env_traced(rx.url)
    assert res.returncode == 0, res.stderr
    assert [s.name for _, s in rx.spans()] == ["add"]


def test_a_labelled_process_exports_under_its_own_resource():
    """A dask worker names itself (trueno.dask sets boot.LABEL at its first task): its spans
    sent at exit arrive under a resource with its host, pid and worker address."""
    prelude = (
        "from trueno.trace import boot; boot.LABEL.update(process='worker w0', "
        "worker='tcp://10.0.0.7:40001', host='node-7'); import os; print(os.getpid()); "
    )
    with Receiver() as rx:
        res, _ = run_env_traced(rx.url, prelude=prelude)
    assert res.returncode == 0, res.stderr
    (attrs, span), = rx.spans()  # fmt: skip
    assert span.name == "add"
    assert attrs["trueno.worker"] == attrs["service.instance.id"] == "tcp://10.0.0.7:40001"
    assert attrs["host.name"] == "node-7" and attrs["trueno.process"] == "worker w0"
    _, _, req = rx.requests[0]
    pid = {a.key: a.value.int_value for a in req.resource_spans[0].resource.attributes}
    assert pid["process.pid"] == int(res.stdout.split()[0])


def test_in_process_export_to_a_dead_or_slow_collector_is_bounded():
    res, elapsed = run_env_traced(f"http://127.0.0.1:{closed_port()}")
    assert res.returncode == 0 and "OTLP export" in res.stderr and elapsed < 20
    with Receiver(delay=10.0) as rx:
        res, slow = run_env_traced(rx.url, timeout="1")
    assert res.returncode == 0 and slow < 20 and "OTLP export" in res.stderr
