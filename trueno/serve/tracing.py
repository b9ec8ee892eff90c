"""Per-request traces: each request is a span tree, sent over OTLP when it ends.

    request                      (the HTTP handler: request id, endpoint, prompt tokens)
      choice                     (one per sequence of the request: n >= 1)
        queue                    (submitted -> given a KV slot)
        prefill                  (each prompt chunk it ran, on the engine thread)
        decode                   (each batched step it took part in, with the batch size)
        detokenize               (its first token handled -> its last; ``busy_ns`` of text work)

A W3C ``traceparent`` request header makes ``request`` a child of the caller's span, so a
client's trace continues into the server. Off (no ``--otlp-endpoint``) nothing is recorded:
the engine checks one attribute per sequence and step. The spans are trueno trace records
(:mod:`trueno.trace.export`'s shape) replayed by :func:`trueno.trace.otlp.send` in a worker
thread after the response, never on the engine thread.
"""

from __future__ import annotations

import threading
import time
from time import perf_counter_ns

from trueno.trace.export import parse_traceparent


class RequestTrace:
    def __init__(self, name: str, traceparent: str | None, **attrs) -> None:
        self.epoch_ns = time.time_ns() - perf_counter_ns()  # perf_counter_ns -> epoch
        self.t0 = perf_counter_ns()
        self.traceparent = traceparent if parse_traceparent(traceparent or "") else ""
        self.spans: list[dict] = []
        self.root = self.add(name, self.t0, self.t0, None, "serve", **attrs)

    def add(self, name: str, start_ns: int, end_ns: int, parent: int | None,
            category: str = "serve", **attrs) -> int:  # fmt: skip
        sid = len(self.spans) + 1
        self.spans.append({
            "id": sid, "parent": parent, "name": name, "category": category,
            "start_ns": start_ns, "dur_ns": max(0, end_ns - start_ns),
            "thread": threading.get_ident(), "attrs": attrs,
        })  # fmt: skip
        return sid

    def add_choice(self, index: int, t_submit_ns: int, seq, detok: tuple[int, int, int]) -> None:
        """A choice's spans: its queue wait, the engine steps it took part in (``seq.spans``),
        and its detokenize span (first, last, busy ns)."""
        steps = seq.spans or []
        end = max([e for _, _, e, _ in steps] + [detok[1], t_submit_ns])
        choice = self.add("choice", t_submit_ns, end, self.root, index=index,
                          finish_reason=str(seq.finish_reason), tokens=len(seq.tokens),
                          cached_tokens=seq.n_cached)  # fmt: skip
        if seq.t_admit_ns:
            self.add("queue", t_submit_ns, seq.t_admit_ns, choice)
        for name, start, stop, attrs in steps:
            self.add(name, start, stop, choice, "llm", **attrs)
        if detok[0]:
            self.add("detokenize", detok[0], detok[1], choice, busy_ns=detok[2])

    def finish(self, **attrs) -> dict:
        """Close the request span; the trace as :func:`trueno.trace.otlp.send` takes it."""
        root = self.spans[0]
        root["dur_ns"] = perf_counter_ns() - self.t0
        root["attrs"].update(attrs)
        return {"epoch_ns": self.epoch_ns, "spans": self.spans}


class Exporter:
    """Sends finished request traces to an OTLP/HTTP endpoint from one worker thread."""

    def __init__(self, endpoint: str, service_name: str = "trueno-serve") -> None:
        import queue

        self.endpoint, self.service_name = endpoint, service_name
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.results: list[dict] = []  # the last few send results (for tests and logs)
        self._thread = threading.Thread(target=self._run, name="trueno-otlp", daemon=True)
        self._thread.start()

    def submit(self, trace: dict, traceparent: str) -> None:
        self.inbox.put((trace, traceparent))

    def _run(self) -> None:
        from trueno.trace import otlp

        while True:
            trace, traceparent = self.inbox.get()
            res = otlp.send(trace, self.endpoint, "http", 5.0, self.service_name, traceparent)
            self.results = [*self.results[-15:], res]
