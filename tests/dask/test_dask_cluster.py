"""The trueno worker plugin's thread settings and one trace across a 2-process cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import trueno

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


def test_a_worker_on_the_clients_kernel_is_not_shifted():
    """Same boot id, same clock: the scheduler's delay and the client's offset (estimates,
    wrong by tens of ms on a loaded host) are not applied; another kernel's worker is."""
    from trueno.dask.cluster import clock_id, merge

    here = clock_id()
    if here is None:
        pytest.skip("no /proc/sys/kernel/random/boot_id here")

    def worker(clock):
        return {"pid": 7, "host": "h", "name": "w", "epoch0_ns": 2_000, "clock": clock,
                "scheduler_delay_s": 0.25, "dropped": 0,
                "spans": [{"id": 1, "parent": None, "start_ns": 10, "dur_ns": 5,
                           "thread": 1, "name": "x"}]}  # fmt: skip

    spans, procs = merge(1_000, 0.5, {"tcp://a:1": worker(here), "tcp://b:1": worker("other")})
    assert [p["clock_shift_ns"] for p in procs] == [0, -250_000_000]
    assert spans[0]["start_ns"] == 2_000 + 10 - 1_000


def test_client_clock_offset_is_measured_once_per_ttl(monkeypatch):
    """A capture's start asks the scheduler for its clock at most once per OFFSET_TTL_S (a
    round trip per capture was part of tracing's cost); the offset is the same after."""
    import time

    from trueno.dask import cluster

    class Client:
        calls = 0
        scheduler = type("S", (), {"address": "tcp://offset-test:1"})()

        def run_on_scheduler(self, fn):
            Client.calls += 1
            return fn() + 2.5  # the scheduler's clock runs 2.5 s ahead

    monkeypatch.setattr(cluster, "_OFFSETS", {})
    c = Client()
    first = cluster._client_offset_s(c)
    assert abs(first - 2.5) < 0.05 and Client.calls == 1
    assert cluster._client_offset_s(c) == first and Client.calls == 1  # reused
    key = Client.scheduler.address
    cluster._OFFSETS[key] = (first, time.monotonic() - cluster.OFFSET_TTL_S - 1)  # aged
    assert abs(cluster._client_offset_s(c) - 2.5) < 0.05 and Client.calls == 2  # expired


def test_a_capture_costs_one_round_trip_at_exit(client, monkeypatch):
    """Nothing goes to the cluster when a capture starts (the traced tasks turn each
    worker's recorder on); its exit gathers every worker's spans in one ``client.run``."""
    import trueno.dask  # noqa: F401
    from trueno.dask import cluster

    # the 8 chunks held alternately by the two workers, so the tasks (which run where their
    # chunk is) leave spans on both: from a client-side array, the scheduler may put all 8
    # tiny tasks on one worker (seen once under a loaded `make test`)
    workers = sorted(client.scheduler_info()["workers"])
    blocks = [
        client.scatter(np.ones((100, 16)), workers=[workers[i % 2]], hash=False) for i in range(8)
    ]
    x = da.concatenate([da.from_delayed(b, (100, 16), np.float64) for b in blocks])
    with trueno.trace.capture():  # the clock offset cached (measured once per TTL)
        trueno.gelu(x).compute()
    calls = []
    run, on_scheduler = client.run, client.run_on_scheduler
    monkeypatch.setattr(client, "run", lambda *a, **k: calls.append("run") or run(*a, **k))
    monkeypatch.setattr(
        client,
        "run_on_scheduler",
        lambda *a, **k: calls.append("scheduler") or on_scheduler(*a, **k),
    )
    with trueno.trace.capture() as t:
        assert calls == []  # no round trip at the start
        trueno.gelu(x).compute()
        assert calls == []
    assert calls == ["run"]  # exactly one at the exit
    assert sum(sp["name"] == "dask.chunk gelu" for sp in t.spans) == x.npartitions
    assert len({sp["pid"] for sp in t.spans if sp.get("worker")}) == 2
    assert cluster._OPEN == []


def test_nested_captures_and_the_capture_window(client):
    """A drain at an inner capture's exit reaches the outer one too; spans that ran before a
    capture started (a graph built while tracing, computed after) stay out of it."""
    import time

    import trueno.dask  # noqa: F401

    x = da.from_array(np.ones((800, 16)), chunks=(100, 16))
    with trueno.trace.capture() as outer:
        trueno.gelu(x).compute()
        time.sleep(0.1)
        with trueno.trace.capture() as inner:
            trueno.softmax(x).compute()
        trueno.relu(x).compute()
    names = [sp["name"] for sp in outer.spans if sp.get("worker")]
    for op in ("gelu", "softmax", "relu"):
        assert names.count(f"dask.chunk {op}") == x.npartitions, op
    inner_names = {sp["name"] for sp in inner.spans if sp.get("worker")}
    assert "dask.chunk softmax" in inner_names
    assert not inner_names & {"dask.chunk gelu", "dask.chunk relu"}

    with trueno.trace.capture():
        late = trueno.gelu(x)  # built while tracing: its tasks carry the flag
    late.compute()  # ... and turn the workers' recorders on after the capture
    time.sleep(0.1)
    with trueno.trace.capture() as t:
        pass
    assert not [sp for sp in t.spans if sp.get("worker")]


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
    # the plugin was asked to trace: the capture's end leaves the workers recording
    assert all(v == (True, True) for v in client.run(state).values())
    x = da.from_array(np.ones((400, 16)), chunks=(100, 16))
    with trueno.trace.capture() as t:  # and a later capture still gathers their spans
        trueno.gelu(x).compute()
    assert sum(sp["name"] == "dask.chunk gelu" for sp in t.spans) == x.npartitions
    assert all(v == (True, True) for v in client.run(state).values())


def test_otlp_resources_name_each_worker(client):
    """The cluster's trace sent over OTLP/HTTP to a real receiver (http.server on 127.0.0.1):
    each worker's spans arrive under its own resource (host, pid, worker address)."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trace"))
    from otlp_receiver import Receiver

    import trueno.dask  # noqa: F401
    from trueno.trace import otlp

    x = da.from_array(np.ones((2000, 32)), chunks=(250, 32))
    with trueno.trace.capture() as t:
        trueno.softmax(x).compute()
    with Receiver() as rx:
        res = otlp.send(t.to_trace(), rx.url, timeout=10)
    assert res["ok"], res
    per_resource = {}
    for _, _, req in rx.requests:
        for rs in req.resource_spans:
            attrs = {a.key: a.value for a in rs.resource.attributes}
            names = [sp.name for ss in rs.scope_spans for sp in ss.spans]
            key = attrs["trueno.worker"].string_value if "trueno.worker" in attrs else None
            per_resource.setdefault(key, []).append((attrs, names))
    workers = client.run(lambda: __import__("os").getpid())
    assert set(per_resource) >= set(workers)  # one resource per worker address
    for address, pid in workers.items():
        for attrs, names in per_resource[address]:
            assert attrs["process.pid"].int_value == pid
            assert attrs["host.name"].string_value
            assert attrs["service.instance.id"].string_value == address
            assert attrs["trueno.process"].string_value.startswith("worker ")
            assert all(
                n in ("softmax", "dask.chunk softmax") or n.startswith("numba") for n in names
            )
    chunk_spans = sum(
        n == "dask.chunk softmax" for v in per_resource.values() for _, ns in v for n in ns
    )
    assert chunk_spans == x.npartitions


def test_trace_run_of_a_dask_script_merges_labelled_workers(tmp_path):
    """``trueno trace run -- python script.py`` on a script that uses dask and never calls
    trace.capture(): its LocalCluster's workers write their own parts, labelled as workers,
    and ``trueno trace summary`` breaks the run down per worker. No worker outlives it."""
    import subprocess

    import psutil

    script = tmp_path / "script_using_dask.py"
    script.write_text(
        "import numpy as np, dask.array as da, os\n"
        "from distributed import Client, LocalCluster\n"
        "import trueno\n"
        "if __name__ == '__main__':\n"
        "    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,\n"
        "                      dashboard_address=None) as cluster, Client(cluster) as c:\n"
        "        x = da.from_array(np.ones((4000, 64)), chunks=(500, 64))\n"
        "        print('sum', float(trueno.sum(trueno.gelu(x)).compute()))\n"
        "        print('pids', sorted(c.run(os.getpid).values()))\n"
    )
    out = tmp_path / "t.json"
    run = subprocess.run(
        [sys.executable, "-m", "trueno", "trace", "run", "-o", str(out), "--syscalls", "off",
         "--", sys.executable, str(script)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("pids"))
    pids = set(json.loads(line.split(" ", 1)[1]))
    assert len(pids) == 2 and not [p for p in pids if psutil.pid_exists(p)]
    spans = trueno.trace.load(out)["spans"]
    chunks = [s for s in spans if s["name"] == "dask.chunk gelu"]
    assert len(chunks) == 8 and {s["pid"] for s in chunks} <= pids
    assert all(s["process"].startswith("worker ") and s["worker"] for s in chunks)
    res = subprocess.run(
        [sys.executable, "-m", "trueno", "trace", "summary", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0 and "per process:" in res.stdout
    for label in {s["process"] for s in chunks}:  # a table per worker that ran chunks
        assert f"{label}:" in res.stdout


def test_a_worker_in_the_client_process_leaves_the_process_alone():
    """LocalCluster(processes=False): the workers are threads of the client's process, whose
    trueno pool and trace label stay the user's."""
    from distributed import Client, LocalCluster

    from trueno import config
    from trueno.dask.plugin import SETTINGS
    from trueno.trace import boot

    before = (config.NUM_THREADS, dict(SETTINGS), dict(boot.LABEL))
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                     dashboard_address=None) as cluster,
        Client(cluster, set_as_default=True) as c,
    ):  # fmt: skip
        x = da.from_array(np.ones((400, 16)), chunks=(50, 16))
        assert c.compute(trueno.gelu(x).sum()).result() > 0
    assert (config.NUM_THREADS, dict(SETTINGS), dict(boot.LABEL)) == before
