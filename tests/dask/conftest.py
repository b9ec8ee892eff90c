"""A real 2-process distributed.LocalCluster per test module (1 thread per worker)."""

from __future__ import annotations

import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=40,
    )
    c = Client(cluster)
    pids = list(c.run(lambda: __import__("os").getpid()).values())
    try:
        yield c
    finally:
        c.close()
        cluster.close()
        import psutil

        gone, alive = psutil.wait_procs([p for p in map(_proc, pids) if p is not None], timeout=10)
        assert not alive, f"worker processes left behind: {alive}"


def _proc(pid):
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
