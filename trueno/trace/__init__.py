"""Built-in tracing. ``with trueno.trace.capture() as t:`` records every op and region span;
``trueno.trace.span(name)`` opens a region (a layer, a token, a generate call).

Only :mod:`trueno.trace.recorder` is on the hot path; exporters, golden traces and budget
checks live in their own modules and are imported when used.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

from trueno import config
from trueno.trace import recorder
from trueno.trace.recorder import span


def enabled() -> bool:
    return recorder.ENABLED


# Hooks that widen a capture past this process (trueno.dask adds one for the workers of an
# active distributed.Client). A hook is called with the Capture when it starts (or, for a hook
# added during a capture, at once) and returns None or a ``finish()`` callable; at the
# capture's exit each finish() returns the spans it gathered (dicts as ``Capture.spans``,
# start_ns on this recorder's clock, with ``pid``/``process`` labels).
CAPTURE_HOOKS: list[Callable] = []
_active: list[Capture] = []


def capturing() -> bool:
    """Whether a :func:`capture` is open in this process."""
    return bool(_active)


def add_capture_hook(hook: Callable) -> None:
    """Register ``hook`` for every later capture and start it on the active ones."""
    if hook in CAPTURE_HOOKS:
        return
    CAPTURE_HOOKS.append(hook)
    for cap in _active:
        cap._start_hook(hook)


class Capture:
    """The spans of one capture, with summary and export helpers."""

    def __init__(self, rec: recorder.Recorder) -> None:
        self._rec = rec
        self._spans: list[dict] | None = None
        self._finishers: list[Callable] = []
        self.extra_spans: list[dict] = []  # gathered by the hooks (other processes)
        self.processes: list[dict] = []  # one entry per process whose spans are merged

    def _start_hook(self, hook) -> None:
        finish = hook(self)
        if finish is not None:
            self._finishers.append(finish)

    def _finish_hooks(self) -> None:
        for finish in self._finishers:
            self.extra_spans.extend(finish() or ())
        self._finishers = []

    @property
    def epoch0_ns(self) -> int:
        return self._rec.epoch0_ns

    @property
    def spans(self) -> list[dict]:
        if self._spans is None:
            own = self._rec.spans()
            if self.extra_spans:  # merged with other processes: label our own too
                import os
                import socket

                label = {"pid": os.getpid(), "host": socket.gethostname(), "process": "client"}
                own = [{**s, **label} for s in own]
                own = sorted(own + self.extra_spans, key=lambda s: s["start_ns"])
            self._spans = own
        return self._spans

    @property
    def dropped(self) -> int:
        return self._rec.dropped

    def to_trace(self, name: str = "capture") -> dict:
        """The spans as a versioned trace dict (see :mod:`trueno.trace.schema`)."""
        from trueno.trace.schema import make_trace

        return make_trace(
            self.spans, [{"dropped": self.dropped}], name=name, epoch_ns=self._rec.epoch0_ns
        )

    def summary(self):
        from trueno.trace.summary import summarize

        return summarize(self.spans)

    def to_json(self, path) -> None:
        from trueno.trace.export import write_json

        write_json(self.spans, path, dropped=self.dropped, epoch_ns=self._rec.epoch0_ns)

    def to_chrome(self, path) -> None:
        from trueno.trace.export import write_chrome

        write_chrome(self.spans, path)


@contextmanager
def capture(capacity: int | None = None):
    """Trace everything inside the block; yields a :class:`Capture` filled on exit."""
    was_on, previous = recorder.ENABLED, recorder.current()
    rec = recorder.start(capacity)
    cap = Capture(rec)
    _active.append(cap)
    for hook in list(CAPTURE_HOOKS):
        cap._start_hook(hook)
    try:
        yield cap
    finally:
        _active.remove(cap)
        try:
            cap._finish_hooks()
        finally:
            recorder.stop()
        if was_on and previous is not None:  # restore an outer capture
            recorder._recorder = previous
            recorder.ENABLED = True
            if cap.extra_spans:  # other processes' spans reach the outer trace too
                shift = rec.t0_ns - previous.t0_ns
                previous.extra_spans.extend(
                    {**s, "start_ns": s["start_ns"] + shift} for s in cap.extra_spans
                )


def run(
    cmd: list[str],
    repeat: int = 1,
    syscalls: str = "auto",
    quiet: bool = False,
    name: str | None = None,
) -> dict:
    """Run a program under the tracer (as ``trueno trace run``) and return the trace dict."""
    from trueno.trace.runner import trace_command

    return trace_command(list(cmd), repeat, syscalls, quiet, name)


def load(path) -> dict:
    """Read a trace file written by ``trueno trace run`` or :meth:`Capture.to_json`."""
    from trueno.trace.schema import load as _load

    return _load(path)


def check(trace: dict, config_path="renacer.toml", target: str | None = None):
    """Evaluate the renacer.toml rules for ``trace``: (exit code, results). Exit codes as the
    CLI: 0 pass, 1 violation, 3 not measured; a bad config raises ConfigError."""
    from trueno.trace import rules

    cfg = rules.load_config(config_path)
    results = rules.evaluate(trace, rules.rules_for(cfg, target or trace.get("name")), cfg["_base"])
    return rules.exit_code(results), results


if config.TRACE_ON_START:  # TRUENO_TRACE=1: trace this process, write the spans at exit
    from trueno.trace import boot

    boot.install()

__all__ = [
    "CAPTURE_HOOKS",
    "Capture",
    "add_capture_hook",
    "capture",
    "capturing",
    "check",
    "enabled",
    "load",
    "run",
    "span",
]
