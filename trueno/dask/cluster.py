"""One trace across the cluster: a client-side ``trueno.trace.capture()`` turns every
worker's recorder on when it starts and, at exit, gathers their spans with real pids and
host names, on the client's clock (each side's offset to the scheduler's clock)."""

from __future__ import annotations

import os
import socket
import time

from trueno.dask.plugin import SETTINGS
from trueno.trace import recorder

ID_STRIDE = 1 << 48  # worker k's span ids move to (k + 1) * ID_STRIDE + id: unique when merged


_WAS_ON: list[bool] = []  # (on a worker) whether its recorder was on before each capture


def _worker_start(dask_worker=None) -> bool:
    """(on a worker) a fresh recorder for the capture; returns whether one was on before."""
    was = recorder.ENABLED
    _WAS_ON.append(was)
    recorder.start()
    return was


def _worker_collect(dask_worker=None) -> dict:
    """(on a worker) the spans since _worker_start, with what the client needs to merge. A
    recorder that was on before the capture (the plugin's, when the client traced as it
    registered) goes on recording afterwards, from a fresh buffer."""
    rec = recorder.current()
    spans = rec.spans() if rec is not None else []
    keep_on = (_WAS_ON.pop() if _WAS_ON else False) or bool(SETTINGS.get("trace"))
    recorder.stop()
    if keep_on:
        recorder.start()
    delay = getattr(dask_worker, "scheduler_delay", 0.0) if dask_worker is not None else 0.0
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "name": str(getattr(dask_worker, "name", "")),
        "address": getattr(dask_worker, "address", ""),
        "epoch0_ns": rec.epoch0_ns if rec is not None else 0,
        "scheduler_delay_s": float(delay or 0.0),
        "dropped": rec.dropped if rec is not None else 0,
        "spans": spans,
    }


OFFSET_TTL_S = 30.0  # a measured client-to-scheduler clock offset is reused this long
_OFFSETS: dict = {}  # scheduler address -> (offset s, measured at: time.monotonic())


def _client_offset_s(client) -> float:
    """The scheduler's clock minus the client's (half a round trip of error). Measured once
    per ``OFFSET_TTL_S`` per scheduler: a capture's start then costs one round trip to the
    workers, not a second one to the scheduler (clocks drift by far less in that time)."""
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


def merge(cap_epoch0_ns: int, client_offset_s: float, results: dict) -> tuple[list, list]:
    """Worker spans on the client's recorder clock, labelled; and one entry per worker."""
    spans, procs = [], []
    for k, (address, info) in enumerate(sorted(results.items())):
        # worker epoch -> scheduler clock (+delay) -> client clock (-client offset)
        shift_ns = int((info["scheduler_delay_s"] - client_offset_s) * 1e9)
        base = info["epoch0_ns"] + shift_ns - cap_epoch0_ns
        ids = (k + 1) * ID_STRIDE
        label = {
            "pid": info["pid"],
            "host": info["host"],
            "process": f"worker {info['name'] or address}",
            "worker": address,
        }
        for s in info["spans"]:
            s = {**s, **label}
            s["start_ns"] = s["start_ns"] + base
            s["id"] = s["id"] + ids
            if s.get("parent"):
                s["parent"] = s["parent"] + ids
            spans.append(s)
        procs.append(
            {
                "worker": address,
                "pid": info["pid"],
                "host": info["host"],
                "clock_shift_ns": shift_ns,
                "spans": len(info["spans"]),
                "dropped": info["dropped"],
            }
        )
    return spans, procs


def collect_hook(cap):
    """The trace.capture hook: None without an active distributed.Client."""
    client = active_client()
    if client is None or getattr(client, "status", "running") != "running":
        return None
    client.run(_worker_start)
    offset = _client_offset_s(client)

    def finish() -> list[dict]:
        results = client.run(_worker_collect)
        spans, procs = merge(cap.epoch0_ns, offset, results)
        cap.processes.extend(procs)
        return spans

    return finish
