"""Per-request traces over OTLP: a span tree per request, continuing a caller's traceparent."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from serve_helpers import EOS, wait_idle

pb = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP collector on 127.0.0.1 keeping every exported span."""

    def __init__(self) -> None:
        self.spans: list = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = pb.ExportTraceServiceRequest.FromString(body)
                for rs in req.resource_spans:
                    for ss in rs.scope_spans:
                        outer.spans.extend(ss.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()
                self.wfile.write(pb.ExportTraceServiceResponse().SerializeToString())

            def log_message(self, *args):
                pass

        self.http = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def wait_for(self, n_roots: int, timeout: float = 20.0) -> list:
        end = time.time() + timeout
        while time.time() < end:
            roots = [s for s in self.spans if s.name == "request"]
            if len(roots) >= n_roots:
                return roots
            time.sleep(0.05)
        raise AssertionError(f"{len(self.spans)} spans arrived, not {n_roots} request trees")


@pytest.fixture(scope="module")
def traced(live):
    collector = Collector()
    live.server.trace_to(collector.url)
    yield live, collector
    live.server.exporter = None
    collector.http.shutdown()
    wait_idle(live)


def test_a_request_is_a_span_tree_under_the_callers_trace(traced):
    live, collector = traced
    stream = live.client().chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "the dog"}], max_tokens=5,
        temperature=0, logit_bias={str(EOS): -100}, stream=True,
        extra_headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
    )  # fmt: skip
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in stream) >= 1
    (root,) = collector.wait_for(1)
    spans = [s for s in collector.spans if s.trace_id == root.trace_id]
    assert root.trace_id.hex() == TRACE_ID and root.parent_span_id.hex() == CALLER_SPAN
    by_id = {s.span_id: s for s in spans}
    (choice,) = [s for s in spans if s.name == "choice"]
    assert choice.parent_span_id == root.span_id
    kids = [s for s in spans if s.parent_span_id == choice.span_id]
    names = [s.name for s in kids]
    assert names.count("queue") == 1 and names.count("detokenize") == 1
    assert names.count("prefill") >= 1
    assert names.count("decode") == 4  # 5 tokens: the first from the prompt, 4 decode steps
    for s in spans:
        if s is not root:
            parent = by_id[s.parent_span_id]
            assert parent.start_time_unix_nano <= s.start_time_unix_nano
            assert s.end_time_unix_nano <= root.end_time_unix_nano
    attrs = {a.key: a.value for a in root.attributes}
    assert attrs["trueno.attr.completion_tokens"].int_value == 5
    assert attrs["trueno.attr.request_id"].string_value.startswith("chatcmpl-")


def test_without_traceparent_each_request_is_its_own_trace(traced):
    live, collector = traced
    before = len(collector.wait_for(0))
    for _ in range(2):
        live.client().completions.create(model="tiny", prompt="a", max_tokens=2, n=2)
    roots = collector.wait_for(before + 2)[before:]
    assert len({r.trace_id for r in roots}) == 2 and all(not r.parent_span_id for r in roots)
    for r in roots:
        choices = [s for s in collector.spans
                   if s.trace_id == r.trace_id and s.name == "choice"]  # fmt: skip
        assert len(choices) == 2
