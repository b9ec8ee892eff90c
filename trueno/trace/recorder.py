"""The span recorder: the only part of tracing on the hot path.

Off (the default) costs one module-level bool test per op. On, a span is two
``perf_counter_ns()`` calls and one row written into preallocated numpy columns (a ring
buffer); spans that do not fit are counted as dropped, never allocated. Names, backends,
shapes and dtypes are interned into small tables so a row is fixed-size.
"""

from __future__ import annotations

import threading
from time import perf_counter_ns

import numpy as np

from trueno import config

ENABLED: bool = False  # the hot-path flag; read as ``recorder.ENABLED``

_lock = threading.Lock()
_local = threading.local()

SPAN_FIELDS = (
    ("id", np.int64),
    ("parent", np.int64),
    ("thread", np.int64),
    ("name", np.int32),
    ("category", np.int32),
    ("backend", np.int32),
    ("shape", np.int32),
    ("dtype", np.int32),
    ("start_ns", np.int64),
    ("dur_ns", np.int64),
    ("bytes", np.int64),
    ("flops", np.int64),
)


class _Strings:
    """Intern table: string -> small int, with the reverse list."""

    def __init__(self) -> None:
        self.index: dict = {}
        self.values: list = []

    def id(self, value) -> int:
        i = self.index.get(value)
        if i is None:
            with _lock:
                i = self.index.get(value)
                if i is None:
                    i = len(self.values)
                    self.values.append(value)
                    self.index[value] = i
        return i


class Recorder:
    """Fixed-capacity store of finished spans (columns of numpy arrays)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.cols = {name: np.zeros(capacity, dtype=dt) for name, dt in SPAN_FIELDS}
        self.count = 0  # spans written (<= capacity)
        self.dropped = 0
        self.next_id = 1
        self.strings = _Strings()  # names, categories, backends, dtypes
        self.shapes = _Strings()  # shape tuples
        self.attrs: dict[int, dict] = {}  # span id -> extra attributes (composite spans only)
        self.t0_ns = perf_counter_ns()

    def new_id(self) -> int:
        with _lock:
            i = self.next_id
            self.next_id += 1
        return i

    def write(self, span_id, parent, name, category, backend, shape, dtype, start, dur,
              nbytes, flops) -> None:
        s, sh = self.strings.id, self.shapes.id
        row = (span_id, parent, threading.get_ident(), s(name), s(category), s(backend),
               sh(shape), s(dtype), start, dur, nbytes, flops)
        with _lock:
            i = self.count
            if i >= self.capacity:
                self.dropped += 1
                return
            self.count = i + 1
        c = self.cols
        for (field, _), value in zip(SPAN_FIELDS, row):
            c[field][i] = value

    def spans(self) -> list[dict]:
        """Finished spans as dicts, ordered by start time."""
        n = self.count
        c = {k: v[:n] for k, v in self.cols.items()}
        strs, shapes = self.strings.values, self.shapes.values
        out = []
        for i in np.argsort(c["start_ns"], kind="stable"):
            sid = int(c["id"][i])
            span = {
                "id": sid,
                "parent": int(c["parent"][i]) or None,
                "thread": int(c["thread"][i]),
                "name": strs[c["name"][i]],
                "category": strs[c["category"][i]],
                "backend": strs[c["backend"][i]],
                "shape": list(shapes[c["shape"][i]]),
                "dtype": strs[c["dtype"][i]],
                "start_ns": int(c["start_ns"][i]) - self.t0_ns,
                "dur_ns": int(c["dur_ns"][i]),
                "bytes": int(c["bytes"][i]),
                "flops": int(c["flops"][i]),
            }
            if sid in self.attrs:
                span["attrs"] = self.attrs[sid]
            out.append(span)
        return out


_recorder: Recorder | None = None


def current() -> Recorder | None:
    return _recorder


def _parent_stack() -> list:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def start(capacity: int | None = None) -> Recorder:
    """Turn tracing on with a fresh recorder and return it."""
    global _recorder, ENABLED
    _recorder = Recorder(capacity or config.TRACE_CAPACITY)
    ENABLED = True
    return _recorder


def stop() -> Recorder | None:
    """Turn tracing off; the recorder keeps its spans."""
    global ENABLED
    ENABLED = False
    return _recorder


def record_op(name: str, backend: str, shape: tuple, dtype: str, nbytes: int, flops: int,
              start_ns: int, dur_ns: int) -> None:
    """Record one finished op span (called by dispatch when ENABLED)."""
    rec = _recorder
    if rec is None:
        return
    stack = _parent_stack()
    parent = stack[-1] if stack else 0
    rec.write(rec.new_id(), parent, name, "op", backend, shape, dtype, start_ns, dur_ns,
              nbytes, flops)


class _Span:
    __slots__ = ("name", "category", "attrs", "id", "t0", "backend", "nbytes", "flops")

    def __init__(self, name: str, category: str, attrs: dict) -> None:
        self.name, self.category, self.attrs = name, category, attrs
        self.backend = attrs.pop("backend", "")
        self.nbytes = int(attrs.pop("bytes", 0))
        self.flops = int(attrs.pop("flops", 0))

    def __enter__(self):
        rec = _recorder
        self.id = rec.new_id() if rec is not None else 0
        _parent_stack().append(self.id)
        self.t0 = perf_counter_ns()
        return self

    def __exit__(self, *exc) -> None:
        dur = perf_counter_ns() - self.t0
        stack = _parent_stack()
        if stack and stack[-1] == self.id:
            stack.pop()
        rec = _recorder
        if rec is None or not self.id:
            return
        parent = stack[-1] if stack else 0
        if self.attrs:
            rec.attrs[self.id] = {k: _plain(v) for k, v in self.attrs.items()}
        rec.write(self.id, parent, self.name, self.category, self.backend, (), "", self.t0,
                  dur, self.nbytes, self.flops)


class _NullSpan:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


_NULL = _NullSpan()


def span(name: str, category: str = "region", **attrs):
    """Context manager for composite work (a layer, a token, a generate call). Nests."""
    if not ENABLED:
        return _NULL
    return _Span(name, category, attrs)


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
