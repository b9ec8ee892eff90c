"""Send a finished trace to an OTLP collector through the OpenTelemetry SDK (HTTP or gRPC).

The only module that imports opentelemetry. Spans are replayed after the fact (never one
OTel call per op): each trueno span becomes an SDK span with its real start/end (epoch ns =
``perf_counter_ns`` + the wall-clock anchor taken at recorder start), its real parent, resource
``service.name`` and ``trueno.*`` attributes. A W3C ``TRACEPARENT`` makes the root spans
children of the caller's span. Export runs in a daemon thread joined with a deadline, so a
collector that is down or slow costs at most ``timeout`` seconds.
"""

from __future__ import annotations

import os
import threading

from trueno.errors import ConfigError
from trueno.trace.export import attributes, parse_traceparent, span_epoch_ns

DEFAULT_HTTP = "http://localhost:4318"
DEFAULT_GRPC = "localhost:4317"


def resolve_endpoint(endpoint: str | None, protocol: str) -> str:
    endpoint = (
        endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    if protocol == "grpc":
        endpoint = endpoint or DEFAULT_GRPC
        return endpoint.split("://", 1)[-1].rstrip("/")
    endpoint = (endpoint or DEFAULT_HTTP).rstrip("/")
    if "://" not in endpoint:
        endpoint = "http://" + endpoint
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def _exporter(endpoint: str, protocol: str, timeout: float):
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=timeout)
    raise ConfigError(f"OTLP protocol {protocol!r}: expected http or grpc")


def build_spans(trace: dict, service_name: str = "trueno", traceparent: str | None = None) -> list:
    """SDK ReadableSpans for every span of ``trace`` (parents before children); root spans
    are children of the W3C ``traceparent`` (None: the ``TRACEPARENT`` variable's)."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    finished: list = []

    class _Collect(SpanProcessor):
        def on_end(self, span) -> None:
            finished.append(span)

    class _OneTrace(RandomIdGenerator):
        trace_id = RandomIdGenerator().generate_trace_id()

        def generate_trace_id(self) -> int:
            return self.trace_id

    ids_gen = _OneTrace()
    providers: dict = {}

    def tracer_for(s: dict):
        """One provider per process of a merged trace (a dask cluster's client and workers),
        its resource naming the process; one for the whole trace otherwise."""
        key = resource_attributes(s, service_name)
        frozen = tuple(sorted(key.items()))
        provider = providers.get(frozen)
        if provider is None:
            provider = TracerProvider(
                resource=Resource(key),  # no detectors: fast, exit-safe
                id_generator=ids_gen,
                shutdown_on_exit=False,  # also used from an atexit hook
            )
            provider.add_span_processor(_Collect())
            providers[frozen] = provider
        return provider.get_tracer("trueno.trace")

    root_ctx = otel_context.Context()
    if traceparent is None:
        traceparent = os.environ.get("TRACEPARENT", "")
    if parse_traceparent(traceparent):
        root_ctx = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    spans = trace["spans"]
    children: dict = {}
    ids = {s["id"] for s in spans}
    for s in spans:
        parent = s.get("parent") if s.get("parent") in ids else None
        children.setdefault(parent, []).append(s)
    stack = [(s, root_ctx) for s in reversed(children.get(None, []))]
    while stack:
        s, ctx = stack.pop()
        start, end = span_epoch_ns(trace, s)
        sdk_span = tracer_for(s).start_span(
            s["name"], context=ctx, start_time=start, attributes=attributes(s)
        )
        sdk_span.end(end_time=end)
        child_ctx = otel_trace.set_span_in_context(sdk_span, ctx)
        stack.extend((c, child_ctx) for c in reversed(children.get(s["id"], [])))
    for provider in providers.values():
        provider.shutdown()
    return finished


def resource_attributes(s: dict, service_name: str = "trueno") -> dict:
    """The OTLP resource of span ``s``: the service, and for a span merged from another
    process (a dask worker, the client) its host, pid and process/worker names."""
    out = {"service.name": service_name}
    if not s.get("process"):
        return out
    out["trueno.process"] = str(s["process"])
    if s.get("host"):
        out["host.name"] = str(s["host"])
    if s.get("pid"):
        out["process.pid"] = int(s["pid"])
    if s.get("worker"):
        out["trueno.worker"] = str(s["worker"])
        out["service.instance.id"] = str(s["worker"])
    return out


def send(
    trace: dict,
    endpoint: str | None = None,
    protocol: str = "http",
    timeout: float = 5.0,
    service_name: str = "trueno",
    traceparent: str | None = None,
) -> dict:
    """Export ``trace``; returns {"ok", "spans", "endpoint", "error"} within ~``timeout`` s."""
    url = resolve_endpoint(endpoint, protocol)
    spans = build_spans(trace, service_name, traceparent)
    exporter = _exporter(url, protocol, timeout)
    result: dict = {"ok": False, "spans": len(spans), "endpoint": url, "error": None}

    def work() -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            ok = True
            for i in range(0, len(spans), 512):
                ok = exporter.export(spans[i : i + 512]) == SpanExportResult.SUCCESS and ok
                if not ok:
                    break
            result["ok"] = ok
            if not ok:
                result["error"] = "the collector did not accept the spans"
        except Exception as exc:  # noqa: BLE001 - a collector problem must not break the caller
            result["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=work, name="trueno-otlp-export", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # interpreter shutdown (3.12+): the exporter's own timeout bounds it
        work()
        return result
    thread.join(timeout + 1.0)
    if thread.is_alive():
        result["error"] = f"export did not finish within {timeout:.1f} s (collector slow?)"
    else:
        try:
            exporter.shutdown()
        except Exception:  # noqa: BLE001
            pass
    return result
