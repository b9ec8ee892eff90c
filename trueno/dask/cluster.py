"""One trace across the cluster: a client-side ``trueno.trace.capture()`` gathers every
worker's spans at its exit, with real pids and host names, on the client's clock (each
side's offset to the scheduler's clock).

A capture costs one round trip to the workers, at its exit, and nothing at its start: the
tasks built inside a capture carry a flag (see ``trueno.dask.array._traced``) that turns a
worker's recorder on at the first of them, and the exit's one ``client.run`` drains every
worker's recorder (off again afterwards, unless the plugin keeps it recording). Spans that
started before the capture (a recorder left on by the plugin, or by a graph built in an
earlier capture and computed after it) are dropped by their start time; a drain inside a
nested capture is handed to the enclosing ones too, so none loses the other's spans. Work a
worker runs that no traced graph started (a graph built before the capture) is recorded
only while that worker's recorder is on.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import time

from trueno.dask.plugin import SETTINGS
from trueno.trace import recorder

ID_STRIDE = 1 << 48  # worker k's span ids move to (k + 1) * ID_STRIDE + id: unique when merged
# a span may start this long before its capture (on the client's clock) and still belong to
# it: the error of the clock alignment (half a round trip to the scheduler, plus the
# scheduler's estimate of each worker's offset)
WINDOW_SLACK_NS = 20_000_000


@functools.cache
def clock_id() -> str | None:
    """This kernel's boot id: processes that share it read one CLOCK_REALTIME, so a worker
    that reports the client's own id needs no clock alignment (None where there is none)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _worker_collect(client_pid: int = 0, dask_worker=None) -> dict:
    """(on a worker) the spans recorded for the client's capture, with what the client needs
    to merge. The recorder a traced task armed (``trueno.dask.array._traced``) is drained and
    the one that was on before comes back; unarmed, a recorder the plugin keeps on is drained
    (recording again from a fresh buffer), while the recorder of a process that traces
    itself (``trueno trace run``) keeps its spans for its own part. A worker in the client's
    own process (``processes=False``) gives nothing: its spans are already the capture's."""
    from trueno.dask import array

    delay = getattr(dask_worker, "scheduler_delay", 0.0) if dask_worker is not None else 0.0
    rec = recorder.current() if os.getpid() != client_pid else None
    if rec is not None and array.disarm():
        pass  # the capture's own recorder, now off (or the one before it back)
    elif rec is not None and (not recorder.ENABLED or rec is _self_traced()):
        rec = None
    elif rec is not None:
        recorder.stop()
    if rec is not None and not recorder.ENABLED and SETTINGS.get("trace"):
        recorder.start()
    spans = rec.spans() if rec is not None else []
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "name": str(getattr(dask_worker, "name", "")),
        "address": getattr(dask_worker, "address", ""),
        "epoch0_ns": rec.epoch0_ns if rec is not None else 0,
        "scheduler_delay_s": float(delay or 0.0),
        "clock": clock_id(),
        "dropped": rec.dropped if rec is not None else 0,
        "spans": spans,
    }


def _self_traced():
    """The recorder of a process traced by ``trueno trace run`` (it writes its own part)."""
    boot = sys.modules.get("trueno.trace.boot")
    return getattr(boot, "_rec", None)


OFFSET_TTL_S = 30.0  # a measured client-to-scheduler clock offset is reused this long
_OFFSETS: dict = {}  # scheduler address -> (offset s, measured at: time.monotonic())


def _client_offset_s(client) -> float:
    """The scheduler's clock minus the client's (half a round trip of error). Measured once
    per ``OFFSET_TTL_S`` per scheduler, so most captures make no round trip for it (clocks
    drift by far less in that time)."""
    key = getattr(getattr(client, "scheduler", None), "address", None) or id(client)
    now = time.monotonic()
    cached = _OFFSETS.get(key)
    if cached is not None and now - cached[1] < OFFSET_TTL_S:
        return cached[0]
    t0 = time.time()
    remote = client.run_on_scheduler(time.time)
    t1 = time.time()
    offset = remote - (t0 + t1) / 2
    _OFFSETS[key] = (offset, now)
    return offset


def active_client():
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def merge(
    cap_epoch0_ns: int,
    client_offset_s: float,
    results: dict,
    index: dict | None = None,
    since_ns: int | None = None,
) -> tuple[list, list]:
    """Worker spans on the client's recorder clock, labelled; and one entry per worker.
    ``index``: address -> k (span ids move by ``(k + 1) * ID_STRIDE``; default: the sorted
    addresses); ``since_ns``: drop spans that start before it (the capture's clock). A
    worker on the client's kernel (the same :func:`clock_id`) shares its clock: no shift."""
    spans, procs = [], []
    if index is None:
        index = {a: k for k, a in enumerate(sorted(results))}
    here = clock_id()
    for address, info in sorted(results.items()):
        # worker epoch -> scheduler clock (+delay) -> client clock (-client offset); none on
        # the client's own kernel, where both estimates are only noise (a loaded 2-core host
        # was measured to put a worker's spans more than 80 ms late)
        if here is not None and info.get("clock") == here:
            shift_ns = 0
        else:
            shift_ns = int((info["scheduler_delay_s"] - client_offset_s) * 1e9)
        base = info["epoch0_ns"] + shift_ns - cap_epoch0_ns
        ids = (index[address] + 1) * ID_STRIDE
        label = {
            "pid": info["pid"],
            "host": info["host"],
            "process": f"worker {info['name'] or address}",
            "worker": address,
        }
        kept = 0
        for s in info["spans"]:
            start = s["start_ns"] + base
            if since_ns is not None and start < since_ns:
                continue
            s = {**s, **label}
            s["start_ns"] = start
            s["id"] = s["id"] + ids
            if s.get("parent"):
                s["parent"] = s["parent"] + ids
            spans.append(s)
            kept += 1
        procs.append(
            {
                "worker": address,
                "pid": info["pid"],
                "host": info["host"],
                "clock_shift_ns": shift_ns,
                "spans": kept,
                "dropped": info["dropped"],
            }
        )
    return spans, procs


# the open captures of this process that gather from a cluster: a drain at one's exit also
# reaches the others (their spans left the workers with it)
_OPEN: list[dict] = []


def collect_hook(cap):
    """The trace.capture hook: None without an active distributed.Client. Nothing is sent
    to the cluster now; the returned ``finish`` makes the capture's one round trip."""
    client = active_client()
    if client is None or getattr(client, "status", "running") != "running":
        return None
    mine: dict = {"client": client, "drains": []}
    _OPEN.append(mine)

    def finish() -> list[dict]:
        try:
            results = client.run(_worker_collect, os.getpid())
        finally:
            _OPEN[:] = [o for o in _OPEN if o is not mine]  # by identity: dicts compare equal
        for other in _OPEN:
            if other["client"] is client:
                other["drains"].append(results)
        offset = _client_offset_s(client)
        drains = [*mine["drains"], results]
        addresses = sorted({a for d in drains for a in d})
        index = {a: k for k, a in enumerate(addresses)}
        spans, by_worker = [], {}
        for d in drains:
            got, procs = merge(cap.epoch0_ns, offset, d, index, since_ns=-WINDOW_SLACK_NS)
            spans.extend(got)
            for p in procs:  # one entry per worker, its counts summed over the drains
                seen = by_worker.setdefault(p["worker"], dict(p, spans=0, dropped=0))
                seen["spans"] += p["spans"]
                seen["dropped"] += p["dropped"]
        cap.processes.extend(by_worker[a] for a in addresses if a in by_worker)
        return spans

    return finish
