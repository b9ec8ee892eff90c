"""renacer's own ``[[assertion]]`` DSL, evaluated against a trueno trace.

Each ``[[assertion]]`` table has ``name``, ``type``, ``fail_on_violation`` (default true) and
``enabled`` (default true), plus the keys of its type:

- ``critical_path``: ``max_duration_ms``, optional ``trace_name_pattern`` (a regex over span
  names: the critical path of the matching spans only);
- ``span_count``: ``max_spans``, optional ``span_name_pattern`` (regex); JIT spans (numba's
  start-up work) are not counted;
- ``memory_usage``: ``max_bytes`` and ``tracking_mode`` (default allocations, as in renacer):
  ``rss`` is the peak RSS of the run, ``allocations`` the bytes mapped by successful mmap
  calls plus the growth of the brk break, summed from strace's per-call output (``trace run``
  under strace; "not measured" without it);
- ``anti_pattern``: ``pattern`` GodProcess (one span's self time as a share of the run's
  critical path; JIT spans, numba's start-up work, are not candidates), TightLoop (the share
  of op calls that sit in a run of >= 10 back-to-back calls of one op under 20 us each) or
  PcieBottleneck (host<->device copy time as a share of copy + GPU kernel time), each against
  ``threshold`` in 0..1; optional ``process_name_pattern`` (a regex over the process: a
  span's ``process`` label, a dask worker or client, else the trace's name) looks at the
  matching processes' spans only;
- ``custom``: renacer takes a Rust expression; refused with a ConfigError.

``fail_on_violation = false`` turns a violation into a warning; ``enabled = false`` reports
the assertion as skipped. A metric the trace does not hold is "not measured" either way.
"""

from __future__ import annotations

import re

from trueno.errors import ConfigError
from trueno.trace import metrics as m
from trueno.trace.result import NOT_MEASURED, SKIPPED, Result, check_limits
from trueno.trace.stats import critical_path, self_times

COMMON = ("name", "type", "fail_on_violation", "enabled", "description")
# type -> (required keys, optional keys)
TYPES = {
    "critical_path": (("max_duration_ms",), ("trace_name_pattern",)),
    "span_count": (("max_spans",), ("span_name_pattern",)),
    "memory_usage": (("max_bytes",), ("tracking_mode",)),
    "anti_pattern": (("pattern", "threshold"), ("process_name_pattern",)),
}
PATTERNS = ("GodProcess", "TightLoop", "PcieBottleneck")
TRACKING = ("allocations", "rss")
TIGHT_LOOP_US, TIGHT_LOOP_REPEATS = 20, 10


def validate(assertions, where: str = "config") -> None:
    if not isinstance(assertions, list):
        raise ConfigError(f"{where}: 'assertion' must be an array of tables ([[assertion]])")
    names = set()
    for i, a in enumerate(assertions):
        at = f"{where}: assertion[{i}]"
        if not isinstance(a, dict):
            raise ConfigError(f"{at}: must be a table")
        for key in ("name", "type"):
            if not isinstance(a.get(key), str) or not a[key]:
                raise ConfigError(f"{at}: needs a string {key!r}")
        at = f"{where}: assertion {a['name']!r}"
        if a["name"] in names:
            raise ConfigError(f"{at}: the name is used twice")
        names.add(a["name"])
        kind = a["type"]
        if kind == "custom":
            raise ConfigError(
                f"{at}: type 'custom' takes a Rust expression in renacer, which trueno cannot "
                "evaluate; express it as critical_path, span_count, memory_usage or "
                "anti_pattern, or as a [[rules]] kind"
            )
        if kind not in TYPES:
            raise ConfigError(
                f"{at}: unknown type {kind!r}; expected one of {sorted(TYPES)} "
                "('custom' is not supported)"
            )
        required, optional = TYPES[kind]
        extra = set(a) - set(COMMON) - set(required) - set(optional)
        if extra:
            raise ConfigError(
                f"{at}: {kind}: unknown keys {sorted(extra)}; expected "
                f"{sorted(COMMON + required + optional)}"
            )
        missing = set(required) - set(a)
        if missing:
            raise ConfigError(f"{at}: {kind}: missing keys {sorted(missing)}")
        for key in ("fail_on_violation", "enabled"):
            if key in a and not isinstance(a[key], bool):
                raise ConfigError(f"{at}: {key} must be true or false, found {a[key]!r}")
        for key in ("max_duration_ms", "max_spans", "max_bytes", "threshold"):
            if key in a and (not isinstance(a[key], (int, float)) or isinstance(a[key], bool)):
                raise ConfigError(f"{at}: {key} must be a number, found {a[key]!r}")
            if key in a and a[key] < 0:
                raise ConfigError(f"{at}: {key} must be >= 0, found {a[key]!r}")
        for key in ("trace_name_pattern", "span_name_pattern", "process_name_pattern"):
            if key in a:
                try:
                    re.compile(a[key])
                except (re.error, TypeError) as exc:
                    raise ConfigError(f"{at}: {key} {a[key]!r} is not a regex: {exc}") from None
        if kind == "memory_usage" and a.get("tracking_mode", TRACKING[0]) not in TRACKING:
            raise ConfigError(
                f"{at}: tracking_mode {a['tracking_mode']!r}, expected one of {list(TRACKING)}"
            )
        if kind == "anti_pattern":
            if a["pattern"] not in PATTERNS:
                raise ConfigError(
                    f"{at}: pattern {a['pattern']!r}, expected one of {list(PATTERNS)}"
                )
            if not 0 <= a["threshold"] <= 1:
                raise ConfigError(f"{at}: threshold {a['threshold']} must lie in 0..1")


def evaluate(trace: dict, assertions: list[dict]) -> list[Result]:
    out = []
    for a in assertions:
        kind, label = f"assertion.{a['type']}", a["name"]
        if not a.get("enabled", True):
            out.append(Result(kind, label, SKIPPED, message="enabled = false"))
            continue
        res = _EVAL[a["type"]](trace, a, kind, label)
        out.append(res if a.get("fail_on_violation", True) else res.soften())
    return out


def _critical(trace, a, kind, label):
    if not m.spans_measured(trace) or not trace["spans"]:
        return Result(kind, label, NOT_MEASURED, message="no spans recorded")
    pattern = a.get("trace_name_pattern")
    values = []
    for spans in m.per_run(trace):
        if pattern is not None:
            spans = [s for s in spans if re.search(pattern, s["name"])]
        if spans:
            values.append(critical_path(spans)["busy_ns"])
    if not values:
        return Result(kind, label, NOT_MEASURED, message=f"no span name matches {pattern!r}")
    return check_limits(kind, label, max(values), None, a["max_duration_ms"], "ms", 1e6)


def _span_count(trace, a, kind, label):
    if not m.complete(trace):
        return Result(kind, label, NOT_MEASURED, message="spans were dropped or not recorded")
    pattern = a.get("span_name_pattern")
    counts = [
        sum(
            1
            for s in spans
            if s.get("category") != "jit" and (pattern is None or re.search(pattern, s["name"]))
        )
        for spans in m.per_run(trace)
    ]
    return check_limits(kind, label, max(counts), None, a["max_spans"], " spans")


def _memory(trace, a, kind, label):
    if a.get("tracking_mode", "allocations") == "allocations":
        values = m.mapped_bytes(trace)
        res = check_limits(
            kind, label, None if values is None else max(values), None, a["max_bytes"], " B"
        )
        if values is None:
            res.limit = {"max": a["max_bytes"]}
            res.message = (
                "bytes mapped by mmap/brk need the syscalls traced by strace "
                "(trace run --syscalls strace)"
            )
        return res
    values = m.run_values(trace, "max_rss_bytes")
    res = check_limits(
        kind, label, None if values is None else max(values), None, a["max_bytes"], " B"
    )
    if values is None:
        res.message = "peak RSS not in this trace (traces of `-- CMD` runs hold it)"
    return res


def god_process_share(trace) -> float | None:
    best = None
    for spans in m.per_run(trace):
        busy = critical_path(spans)["busy_ns"]
        selfs = self_times(spans)
        work = [selfs[s["id"]] for s in spans if s.get("category") != "jit"]
        if work and busy:
            share = max(work) / busy
            best = share if best is None else max(best, share)
    return best


def tight_loop_share(trace) -> float | None:
    ops = [s for s in trace["spans"] if s.get("category") == "op"]
    if not ops:
        return 0.0
    looped = sum(n for _, n in m.tight_loops(trace, TIGHT_LOOP_US * 1e3, TIGHT_LOOP_REPEATS))
    return looped / len(ops)


def pcie_share(trace) -> float:
    kernel = sum(s["dur_ns"] for s in m.gpu_ops(trace))
    moved = sum(s["dur_ns"] for s in m.transfers(trace))
    return moved / (moved + kernel) if moved + kernel else 0.0


def process_spans(trace: dict, pattern: str) -> dict:
    """The trace with only the spans of processes whose name matches ``pattern``: a span's
    process is its ``process`` label (a dask worker or client), else the trace's name."""
    name = trace.get("name") or ""
    spans = [s for s in trace["spans"] if re.search(pattern, s.get("process") or name)]
    return {**trace, "spans": spans}


def _anti(trace, a, kind, label):
    if not m.spans_measured(trace):
        return Result(kind, label, NOT_MEASURED, message="no spans recorded")
    pattern = a.get("process_name_pattern")
    if pattern is not None:
        trace = process_spans(trace, pattern)
        if not trace["spans"]:
            return Result(kind, label, NOT_MEASURED, message=f"no process matches {pattern!r}")
    fn = {"GodProcess": god_process_share, "TightLoop": tight_loop_share}.get(
        a["pattern"], pcie_share
    )
    value = fn(trace)
    res = check_limits(kind, label, value, None, a["threshold"])
    res.message = f"{a['pattern']}: {res.message}"
    return res


_EVAL = {
    "critical_path": _critical,
    "span_count": _span_count,
    "memory_usage": _memory,
    "anti_pattern": _anti,
}
