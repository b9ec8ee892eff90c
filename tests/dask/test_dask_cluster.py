"""The trueno worker plugin's thread settings and one trace across a 2-process cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest

da = pytest.importorskip("dask.array")


def _settings():
    from threadpoolctl import threadpool_info

    from trueno import config
    from trueno.dask.plugin import SETTINGS

    blas = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return dict(SETTINGS), config.NUM_THREADS, blas


def test_plugin_threads_within_cores(client):
    import trueno.dask
    from trueno.dask.plugin import pool_size

    trueno.dask.register(client, warm=False)
    per_worker = client.run(_settings)
    assert len(per_worker) == 2
    for settings, num_threads, blas in per_worker.values():
        assert settings["nthreads"] == 1 and settings["workers_on_host"] == 2
        assert settings["pool"] == num_threads == pool_size(1, 2, settings["cores"])
        assert settings["pool"] * settings["nthreads"] * 2 <= max(settings["cores"], 2)
        assert blas and all(n == 1 for n in blas)
    assert pool_size(4, 1, 16) == 4 and pool_size(3, 2, 2) == 1


def test_one_trace_across_workers(client, tmp_path):
    import trueno.dask  # noqa: F401  (registers the capture hook)

    x = da.from_array(np.random.default_rng(0).standard_normal((4000, 64)), chunks=(250, 64))
    with trueno.trace.capture() as t:
        y = trueno.softmax(x)
        s = trueno.sum(trueno.gelu(x))
        y.compute()
        s.compute()
    spans = t.spans
    worker_pids = set(client.run(lambda: __import__("os").getpid()).values())
    span_pids = {sp["pid"] for sp in spans if sp.get("worker")}
    assert span_pids == worker_pids  # spans from both workers' processes
    chunks = [sp for sp in spans if sp["name"] == "dask.chunk softmax"]
    assert len(chunks) == x.npartitions  # one chunk span per task
    ops = [sp for sp in spans if sp["name"] == "softmax" and sp.get("worker")]
    assert len(ops) == x.npartitions
    assert len({sp["id"] for sp in spans}) == len(spans)
    by_id = {sp["id"]: sp for sp in spans}
    for op in ops:  # the op span nests in its chunk span, on the same worker
        assert by_id[op["parent"]]["name"] == "dask.chunk softmax"
        assert by_id[op["parent"]]["pid"] == op["pid"]
    # clocks aligned: worker spans fall inside the client's capture window (+ slack)
    end = max(sp["start_ns"] + sp["dur_ns"] for sp in spans)
    assert min(sp["start_ns"] for sp in spans) > -50_000_000
    assert end < 120 * 1_000_000_000
    assert {p["pid"] for p in t.processes} == worker_pids

    path = tmp_path / "c.json"
    t.to_chrome(path)
    events = json.loads(path.read_text())["traceEvents"]
    names = [e["args"]["name"] for e in events if e.get("name") == "process_name"]
    assert sum(n.startswith("worker") for n in names) == 2  # one process track per worker
    pids = {e["pid"] for e in events if e.get("ph") == "X"}
    assert len(pids) == 2  # the client built graphs only: no spans of its own

    from trueno.trace.summary import by_process

    rows = by_process(spans)
    assert {r["process"] for r in rows} >= {p for p in {sp.get("process") for sp in ops}}
    assert sum(r["calls"] for r in rows if r["name"] == "softmax") == x.npartitions


def test_capture_without_client_is_local():
    from trueno.dask.cluster import merge

    spans, procs = merge(
        1_000, 0.5, {"tcp://a:1": {"pid": 7, "host": "h", "name": "w", "epoch0_ns": 2_000,
                                   "scheduler_delay_s": 0.25, "dropped": 0,
                                   "spans": [{"id": 1, "parent": None, "start_ns": 10,
                                              "dur_ns": 5, "thread": 1, "name": "x"}]}},
    )  # fmt: skip
    # worker epoch 2000 ns, +0.25 s to the scheduler's clock, -0.5 s to the client's
    assert spans[0]["start_ns"] == 2_000 + 10 - 250_000_000 - 1_000
    assert spans[0]["id"] == (1 << 48) + 1 and spans[0]["pid"] == 7
    assert procs[0]["clock_shift_ns"] == -250_000_000


def test_trace_file_and_cli_summary_per_worker(client, tmp_path, capsys):
    import trueno.dask  # noqa: F401
    from trueno.cli.main import main

    x = da.from_array(np.ones((2000, 32)), chunks=(500, 32))
    with trueno.trace.capture() as t:
        trueno.rms_norm(x).compute()
    path = tmp_path / "t.json"
    t.to_json(path)
    loaded = trueno.trace.load(path)
    assert {s.get("pid") for s in loaded["spans"] if s.get("worker")} == set(
        client.run(lambda: __import__("os").getpid()).values()
    )
    assert main(["trace", "summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "per process:" in out and out.count("worker ") >= 2


def test_plugin_turns_recorder_on_when_client_traces(client):
    import trueno.dask

    def state():
        from trueno.dask.plugin import SETTINGS
        from trueno.trace import recorder

        return SETTINGS.get("trace"), recorder.ENABLED

    with trueno.trace.capture():
        trueno.dask.register(client, warm=False)
        assert all(v == (True, True) for v in client.run(state).values())
