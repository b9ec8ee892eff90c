"""A real OTLP/HTTP receiver for the tests (http.server on 127.0.0.1): every POSTed protobuf
ExportTraceServiceRequest is decoded and kept. Used by the trace and the dask tests."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


class Receiver:
    """An OTLP/HTTP endpoint: POST /v1/traces with a protobuf ExportTraceServiceRequest."""

    def __init__(self, delay: float = 0.0) -> None:
        self.requests: list = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if delay:
                    time.sleep(delay)
                req = trace_service_pb2.ExportTraceServiceRequest()
                req.ParseFromString(body)
                outer.requests.append((self.path, self.headers["Content-Type"], req))
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list:
        out = []
        for _, _, req in self.requests:
            for rs in req.resource_spans:
                attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    out += [(attrs, s) for s in ss.spans]
        return out
