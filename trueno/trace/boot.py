"""Tracing a program that was not changed: ``TRUENO_TRACE=1`` turns the recorder on when
trueno is imported, and at exit this process writes its spans (a *part*) to
``TRUENO_TRACE_PARTS/part-PID.json`` (set by ``trueno trace run``) or to
``TRUENO_TRACE_OUTPUT``. Child processes inherit the environment, so they trace themselves
and write their own part; a forked child starts with an empty recorder.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import sys
import time
from pathlib import Path

from trueno import config
from trueno.trace import recorder

# the variables `trueno trace run` hands its programs (named and read in trueno.config)
PARTS_ENV = config.TRACE_PARTS_ENV
LAUNCH_ENV = config.TRACE_LAUNCH_ENV
ROOT_ENV = config.TRACE_ROOT_ENV

# How a layer above names this process in merged traces (trueno.dask sets
# {"process": "worker <name>", "worker": address, "host": ...} in a dask worker); the
# part carries it and ``trueno trace run`` labels the part's spans with it.
LABEL: dict = {}

_installed = False
_boot_epoch_ns = 0
_rec: recorder.Recorder | None = None  # this process's recorder (a capture() may nest)


def proc_counters() -> dict | None:
    """Read/write syscall counts and context switches of this process from /proc."""
    try:
        io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
        status = Path("/proc/self/status").read_text().splitlines()
    except (OSError, ValueError):
        return None
    out = {"read": int(io["syscr"]), "write": int(io["syscw"])}
    for line in status:
        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
            key, value = line.split(":")
            out[key] = int(value)
    return out


def peak_rss_bytes() -> int:
    """Peak resident memory of this process image: VmHWM from /proc (getrusage's ru_maxrss
    also counts the memory of the parent that forked us before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def part(rec: recorder.Recorder) -> dict:
    """This process's spans and self-measured counters."""
    recorder.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    launch = config.trace_launch_ns()
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "argv": list(sys.argv),
        "epoch0_ns": rec.epoch0_ns,
        "boot_epoch_ns": _boot_epoch_ns,
        "startup_ns": (_boot_epoch_ns - launch) if launch and _boot_epoch_ns else None,
        "end_epoch_ns": time.time_ns(),
        "dropped": rec.dropped,
        "cpu_user_s": usage.ru_utime,
        "cpu_sys_s": usage.ru_stime,
        "max_rss_bytes": peak_rss_bytes(),
        "proc": proc_counters(),
        "spans": rec.spans() + rec.extra_spans,
        "label": dict(LABEL),
    }


def output_path() -> Path | None:
    parts = config.trace_parts_dir()
    if parts:
        return Path(parts) / f"part-{os.getpid()}.json"
    if config.TRACE_OUTPUT:
        out = Path(config.TRACE_OUTPUT)
        if (config.trace_root_pid() or str(os.getpid())) != str(os.getpid()):
            out = out.with_name(f"{out.name}.{os.getpid()}")
        return out
    return None


def _write_at_exit() -> None:
    rec = _rec
    path = output_path()
    if rec is None or (path is None and not config.TRACE_OTLP):
        return
    data = part(rec)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, separators=(",", ":")))
        except OSError as exc:  # the traced program's exit must not fail because of tracing
            sys.stderr.write(f"trueno trace: could not write {path}: {exc}\n")
    if config.TRACE_OTLP and not config.trace_parts_dir():  # `trace run` exports itself
        _send_otlp(data)


def _send_otlp(data: dict) -> None:
    """Send this process's spans over OTLP, bounded by TRUENO_TRACE_OTLP_TIMEOUT."""
    try:
        from trueno.trace import otlp, schema

        label = data.get("label") or {}  # a dask worker: its own OTLP resource
        spans = [{**label, "pid": data["pid"], **s} for s in data["spans"]] if label else None
        trace = schema.make_trace(
            spans or data["spans"],
            [],
            name=Path(sys.argv[0] or "python").stem,
            fp={},
            epoch_ns=data["epoch0_ns"],
        )
        res = otlp.send(trace, None, config.TRACE_OTLP, config.TRACE_OTLP_TIMEOUT)
        if not res["ok"]:
            sys.stderr.write(
                f"trueno trace: OTLP export to {res['endpoint']} failed: {res['error']}\n"
            )
    except Exception as exc:  # noqa: BLE001 - never break the program's exit
        sys.stderr.write(f"trueno trace: OTLP export failed: {exc}\n")


def _after_fork() -> None:
    """A forked child traces itself from scratch. multiprocessing's fork children leave with
    os._exit (no atexit), so they write their part from a multiprocessing finalizer."""
    global _rec
    if recorder.ENABLED:
        fresh = recorder.start()
        if _rec is not None:
            _rec = fresh


class _Token:  # a weak-referenceable key for multiprocessing's after-fork registry
    pass


_token = _Token()


def _before_fork() -> None:
    if _rec is not None and "multiprocessing" in sys.modules:
        from multiprocessing import util

        util.register_after_fork(_token, _mp_child)


def _mp_child(_) -> None:
    from multiprocessing import util

    util.Finalize(None, _write_at_exit, exitpriority=-100)


def install() -> None:
    """Start tracing for the life of this process (idempotent)."""
    global _installed, _boot_epoch_ns, _rec
    if _installed:
        return
    _installed = True
    os.environ.setdefault(ROOT_ENV, str(os.getpid()))
    _rec = recorder.start()
    _boot_epoch_ns = time.time_ns()
    atexit.register(_write_at_exit)
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork)
    if config.TRACE_OTLP:  # exporters use thread pools, which cannot start during shutdown
        import concurrent.futures.thread  # noqa: F401
