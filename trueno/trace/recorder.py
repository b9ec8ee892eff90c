"""The span recorder: the only part of tracing on the hot path.

Off (the default) costs one module-level bool test per op. On, a span is two
``perf_counter_ns()`` calls and one row of ``WIDTH`` ints added to a small per-thread buffer of
int64 rows in one C call (:mod:`trueno.trace._rows`; a list of Python ints converted at each
flush cost a span 240 ns more on a Zen 4 host). Full buffers (``CHUNK`` rows) are flushed
under a lock into preallocated numpy columns (a fixed-capacity store) as one copy of their
bytes. Rows that do not fit are counted as dropped, never allocated, so memory stays bounded at
``capacity`` rows plus one chunk per thread. Names, backends, shapes and dtypes are
interned into one key code when a span is recorded (one dict lookup) so a stored row is
fixed-size. Thread-safe: span ids come from one counter in ``_rows`` (atomic under the GIL),
parent stacks are thread-local.
"""

from __future__ import annotations

import threading
import time
from time import perf_counter_ns

import numpy as np

from trueno import config
from trueno.trace import _rows

ENABLED: bool = False  # the hot-path flag; read as ``recorder.ENABLED``
CHUNK = 512  # rows a thread buffers before flushing into the columns

_lock = threading.RLock()
_local = threading.local()
_next_id = _rows.next_id  # span ids, process-wide (also minted by Rows.add for id 0)

# stored per span: 7 int64 columns; name/category/backend/shape/dtype are one interned key
INT_FIELDS = ("id", "parent", "key", "start_ns", "dur_ns", "bytes", "flops")
WIDTH = len(INT_FIELDS)  # int64 a row, in a thread's buffer and in the columns
assert WIDTH == _rows.WIDTH, "trueno/trace/_rows.c stores rows of another width"

_keys: dict[tuple, int] = {}  # (name, category, backend, shape, dtype) -> code, process-wide
_key_values: list[tuple] = []
MAX_KEYS = 1 << 16  # past this many distinct keys, new shapes are stored as () (memory bound)


def _key(name, category, backend, shape, dtype) -> int:
    """The code of a span's descriptive fields (interned once, then one dict lookup)."""
    k = (name, category, backend, shape, dtype)
    code = _keys.get(k)
    if code is None and len(_key_values) >= MAX_KEYS and shape != ():
        return _key(name, category, backend, (), dtype)
    if code is None:
        with _lock:
            code = _keys.get(k)
            if code is None:
                code = len(_key_values)
                _key_values.append(k)
                _keys[k] = code
    return code


class _ThreadBuffer:
    """A thread's unflushed rows (``CHUNK`` rows of ``WIDTH`` int64, each added in one C call,
    atomic under the GIL), with its parent-span stack at hand (one thread-local lookup per op
    span)."""

    __slots__ = ("rec", "rows", "thread", "stack")

    def __init__(self, rec: Recorder) -> None:
        self.rec, self.rows, self.thread = rec, _rows.Rows(CHUNK), threading.get_ident()
        self.stack = _parent_stack()


class Recorder:
    """Fixed-capacity store of finished spans (int64 columns plus a thread column)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.data = np.zeros((self.capacity, len(INT_FIELDS)), dtype=np.int64)
        self.threads = np.zeros(self.capacity, dtype=np.int64)
        self.count = 0  # rows stored (<= capacity)
        self.dropped = 0
        self.attrs: dict[int, dict] = {}  # span id -> extra attributes (composite spans only)
        self.buffers: list[_ThreadBuffer] = []
        # finished spans of other processes merged in by a capture hook (trace.capture),
        # start_ns on this recorder's clock; boot.part() writes them with this process's
        self.extra_spans: list[dict] = []
        # clock anchors taken together: perf_counter_ns() + offset = epoch ns
        self.t0_ns = perf_counter_ns()
        self.epoch0_ns = time.time_ns()

    def buffer(self) -> _ThreadBuffer:
        buf = _ThreadBuffer(self)
        with _lock:
            self.buffers.append(buf)
            if len(self.buffers) > 256:  # many short-lived threads: keep the list bounded
                self._flush_all()
                self.buffers = [b for b in self.buffers if b.rows or b is buf][-256:]
        _local.buf = buf
        return buf

    def flush(self, buf: _ThreadBuffer) -> None:
        """Move a thread's buffered rows into the columns (dropping what does not fit)."""
        with _lock:
            raw = buf.rows.take()  # one C call: the owner's next add waits for it (the GIL)
            if not raw:
                return
            block = np.frombuffer(raw, np.int64).reshape(-1, WIDTH)
            n = len(block)
            i = self.count
            k = min(n, self.capacity - i)
            self.dropped += n - k
            if k <= 0:
                return
            self.data[i : i + k] = block[:k]
            self.threads[i : i + k] = buf.thread
            self.count = i + k

    def _flush_all(self) -> None:
        with _lock:
            for buf in self.buffers:
                self.flush(buf)

    def write(
        self, span_id, parent, name, category, backend, shape, dtype, start, dur, nbytes, flops
    ) -> None:
        """Record one finished span from any thread."""
        buf = getattr(_local, "buf", None)
        if buf is None or buf.rec is not self:
            buf = self.buffer()
        code = _key(name, category, backend, shape, dtype)
        if buf.rows.add(span_id, parent, code, start, dur, nbytes, flops):
            self.flush(buf)  # full

    def write_row(self, thread: int, row: tuple) -> None:
        """Store one finished span of ``thread`` directly (rare spans: JIT work)."""
        with _lock:
            if self.count >= self.capacity:
                self.dropped += 1
                return
            self.data[self.count] = row
            self.threads[self.count] = thread
            self.count += 1

    def spans(self) -> list[dict]:
        """Finished spans as dicts, ordered by start time (``start_ns`` from recorder start)."""
        flush_jit()
        self._flush_all()
        with _lock:
            n = self.count
            data, threads = self.data[:n].copy(), self.threads[:n].copy()
            keys = list(_key_values)
        out = []
        for i in np.argsort(data[:, 3], kind="stable"):
            sid, parent, key, start, dur, nbytes, flops = (int(v) for v in data[i])
            name, category, backend, shape, dtype = keys[key]
            span = {
                "id": sid,
                "parent": parent or None,
                "thread": int(threads[i]),
                "name": name,
                "category": category,
                "backend": _text(backend),
                "shape": [int(d) for d in shape],
                "dtype": _text(dtype),
                "start_ns": start - self.t0_ns,
                "dur_ns": dur,
                "bytes": nbytes,
                "flops": flops,
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
    del jit_pending[:]
    _recorder = Recorder(capacity or config.TRACE_CAPACITY)
    ENABLED = True
    return _recorder


def stop() -> Recorder | None:
    """Turn tracing off; the recorder keeps its spans."""
    global ENABLED
    ENABLED = False
    return _recorder


def record_op(
    name: str,
    backend: str,
    shape: tuple,
    dtype: str,
    nbytes: int,
    flops: int,
    start_ns: int,
    dur_ns: int,
    span_id: int = 0,
) -> None:
    """Record one finished op span (called by dispatch when ENABLED). ``backend`` and
    ``dtype`` may be any hashable (an enum, a numpy dtype): they are stringified on export.
    ``span_id``: the id :func:`claim_jit` gave the op's JIT children (else a fresh one)."""
    k = (name, "op", backend, shape, dtype)
    code = _keys.get(k)
    if code is None:
        code = _key(*k)
    record_coded(code, nbytes, flops, start_ns, dur_ns, span_id)


def op_code(name: str, backend: str, shape: tuple, dtype: str) -> int:
    """The key code of an op span's descriptive fields, for :func:`record_coded` (a caller that
    records many spans of one op keeps the codes by shape and skips the key lookup)."""
    return _key(name, "op", backend, shape, dtype)


def record_coded(
    code: int, nbytes: int, flops: int, start_ns: int, dur_ns: int, span_id: int = 0
) -> None:
    """:func:`record_op` with the fields already coded by :func:`op_code`."""
    rec = _recorder
    if rec is None:
        return
    try:
        buf = _local.buf
    except AttributeError:
        buf = rec.buffer()
    if buf.rec is not rec:
        buf = rec.buffer()
    # id 0: Rows.add takes a fresh one; the parent: the top of the thread's stack of open spans
    if buf.rows.add(span_id, buf.stack, code, start_ns, dur_ns, nbytes, flops):
        rec.flush(buf)  # full


# JIT work (importing numba, loading a kernel from its cache, compiling one) happens inside
# an op whose span is recorded only when the op returns, so its spans wait here, as
# (thread, start, dur, name, parent when it ran, attrs), until that op claims them as its
# children (claim_jit) or, outside any op, until the spans are read (flush_jit).
# Dispatch tests ``jit_pending`` (empty nearly always) after each op it records.
jit_pending: list[tuple] = []


def jit_event(name: str, start_ns: int, dur_ns: int, **attrs) -> None:
    """Note finished JIT work of this thread (category ``jit``) for the op that caused it."""
    if _recorder is None or not ENABLED:
        return
    stack = _parent_stack()
    row = (threading.get_ident(), start_ns, dur_ns, name, stack[-1] if stack else 0, attrs)
    with _lock:
        jit_pending.append(row)


def claim_jit(op_start_ns: int) -> int:
    """Write this thread's pending JIT spans: those that started inside the op being
    recorded (from ``op_start_ns``) become its children. Returns the op's span id."""
    sid = _next_id()
    me = threading.get_ident()
    with _lock:
        mine = [e for e in jit_pending if e[0] == me]
        jit_pending[:] = [e for e in jit_pending if e[0] != me]
    _write_jits(mine, lambda e: sid if e[1] >= op_start_ns else e[4])
    return sid


def flush_jit() -> None:
    """Write every pending JIT span under the span that was open when it ran."""
    with _lock:
        rows = list(jit_pending)
        del jit_pending[:]
    _write_jits(rows, lambda e: e[4])


def _write_jits(rows: list[tuple], parent_of) -> None:
    """JIT work inside other JIT work of the same thread (a kernel loaded while numba's
    backend module is imported) becomes its child, so no time is counted twice."""
    rows = sorted(rows, key=lambda e: (e[0], e[1], -e[2]))
    open_: list[tuple[tuple, int]] = []  # enclosing (row, id) of the current thread
    for e in rows:
        open_ = [(o, i) for o, i in open_ if o[0] == e[0] and e[1] + e[2] <= o[1] + o[2]]
        parent = open_[-1][1] if open_ else parent_of(e)
        sid = _next_id()
        _write_jit(e, parent, sid)
        open_.append((e, sid))


def _write_jit(e: tuple, parent: int, sid: int) -> None:
    rec = _recorder
    if rec is None:
        return
    thread, start, dur, name, _, attrs = e
    if attrs:
        rec.attrs[sid] = {k: _plain(v) for k, v in attrs.items()}
    rec.write_row(thread, (sid, parent, _key(name, "jit", "", (), ""), start, dur, 0, 0))


def record(
    name: str,
    category: str,
    start_ns: int,
    dur_ns: int,
    backend: str = "",
    nbytes: int = 0,
    flops: int = 0,
    **attrs,
) -> None:
    """Record a finished span measured elsewhere (a transfer, an allocation)."""
    rec = _recorder
    if rec is None or not ENABLED:
        return
    stack = _parent_stack()
    sid = _next_id()
    if attrs:
        rec.attrs[sid] = {k: _plain(v) for k, v in attrs.items()}
    rec.write(
        sid,
        stack[-1] if stack else 0,
        name,
        category,
        backend,
        (),
        "",
        start_ns,
        dur_ns,
        int(nbytes),
        int(flops),
    )


class _Span:
    __slots__ = ("name", "category", "attrs", "id", "t0", "backend", "nbytes", "flops")

    def __init__(self, name: str, category: str, attrs: dict) -> None:
        self.name, self.category, self.attrs = name, category, attrs
        self.backend = attrs.pop("backend", "")
        self.nbytes = int(attrs.pop("bytes", 0))
        self.flops = int(attrs.pop("flops", 0))

    def __enter__(self):
        self.id = _next_id()
        _parent_stack().append(self.id)
        self.t0 = perf_counter_ns()
        return self

    def __exit__(self, *exc) -> None:
        dur = perf_counter_ns() - self.t0
        stack = _parent_stack()
        if stack and stack[-1] == self.id:
            stack.pop()
        rec = _recorder
        if rec is None:
            return
        parent = stack[-1] if stack else 0
        if self.attrs:
            rec.attrs[self.id] = {k: _plain(v) for k, v in self.attrs.items()}
        rec.write(
            self.id,
            parent,
            self.name,
            self.category,
            self.backend,
            (),
            "",
            self.t0,
            dur,
            self.nbytes,
            self.flops,
        )


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


def _text(value) -> str:
    """An enum's value or a dtype's name, as exported (the hot path stores the object)."""
    if isinstance(value, str):
        return value
    return str(getattr(value, "value", value))


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
