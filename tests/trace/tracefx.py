"""Helpers for the tracing tests: synthetic traces built span by span, and a small program
that uses threads and (with an argument) a child process."""

from __future__ import annotations

import textwrap

from trueno.trace import schema

PROGRAM = textwrap.dedent(
    """
    import subprocess, sys, threading
    import numpy as np
    import trueno

    a = np.linspace(-1, 1, 1000, dtype=np.float32)
    with trueno.trace.span("outer", category="region", step=1):
        for _ in range(10):
            trueno.add(a, a)
        with trueno.trace.span("inner"):
            trueno.exp(a)
    t = threading.Thread(target=lambda: [trueno.mul(a, a) for _ in range(5)])
    t.start(); t.join()
    if len(sys.argv) > 1:
        subprocess.run([sys.executable, __file__], check=True)
    print("program output")
    """
)


def span(
    sid,
    name,
    start,
    dur,
    parent=None,
    category="op",
    thread=1,
    backend="numpy",
    shape=(1000,),
    nbytes=8000,
    flops=1000,
    run=0,
    **extra,
):
    return {
        "id": sid,
        "parent": parent,
        "thread": thread,
        "name": name,
        "category": category,
        "backend": backend,
        "shape": list(shape),
        "dtype": "float32",
        "start_ns": start,
        "dur_ns": dur,
        "bytes": nbytes,
        "flops": flops,
        "run": run,
        **extra,
    }


def make_run(**kw):
    base = {
        "wall_ns": 100_000_000,
        "startup_ns": 50_000_000,
        "cpu_user_s": 0.1,
        "cpu_sys_s": 0.01,
        "max_rss_bytes": 50_000_000,
        "exit_code": 0,
        "dropped": 0,
        "syscalls": {
            "source": "strace",
            "total": 1000,
            "calls": {
                "read": {"calls": 300, "errors": 0, "seconds": 0.001},
                "mmap": {"calls": 100, "errors": 0, "seconds": 0.001},
                "futex": {"calls": 600, "errors": 0, "seconds": 0.002},
            },
        },
        "processes": 1,
        "epoch_ns": 1_700_000_000_000_000_000,
    }
    base.update(kw)
    return base


def synthetic(spans=None, runs=None, name="synthetic"):
    """A small trace: region 'layer' holding add x3 and matmul, with one run."""
    if spans is None:
        spans = [
            span(1, "layer", 0, 1_000_000, category="region", nbytes=0, flops=0),
            span(2, "add", 10_000, 1_000, parent=1),
            span(3, "add", 20_000, 1_000, parent=1),
            span(4, "add", 30_000, 1_000, parent=1),
            span(5, "matmul", 40_000, 800_000, parent=1, flops=2_000_000),
        ]
    return schema.make_trace(
        spans, runs or [make_run()], name=name, epoch_ns=1_700_000_000_000_000_000
    )
