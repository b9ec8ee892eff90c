"""The ``trueno`` worker plugin: threads sized to the worker's share of the cores, BLAS at
one thread, kernels warmed, the recorder on when the client traces."""

from __future__ import annotations

import os
import socket
import sys

from distributed import WorkerPlugin
from distributed.comm.addressing import get_address_host

from trueno import config
from trueno.trace import recorder

SETTINGS: dict = {}  # what setup() chose, in this worker process (read by tests, traces)
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def pool_size(nthreads: int, workers_on_host: int = 1, ncores: int | None = None) -> int:
    """trueno's pool size so that pool x dask threads x workers on the host <= cores."""
    ncores = cores() if ncores is None else ncores
    return max(1, ncores // max(1, nthreads * max(1, workers_on_host)))


def set_pool_size(n: int) -> None:
    """Make trueno's numba kernels split big inputs over ``n`` threads from now on."""
    os.environ["TRUENO_NUM_THREADS"] = str(n)
    config.NUM_THREADS = n
    par = sys.modules.get("trueno.backends.numba_kernels._par")
    if par is not None:
        par.THREADS = n
        pool, par._pool = par._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


def blas_single_thread() -> int:
    """BLAS at one thread in this process (dask's threads are the parallelism); returns the
    number of BLAS libraries limited."""
    for name in _BLAS_ENV:
        os.environ[name] = "1"
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(1, user_api="blas")
    return sum(1 for i in threadpool_info() if i.get("user_api") == "blas")


def label(worker) -> dict:
    """How merged traces name this worker's process."""
    return {
        "process": f"worker {worker.name if worker.name is not None else worker.address}",
        "worker": worker.address,
        "host": socket.gethostname(),
    }


def workers_on_host(worker) -> int:
    """How many workers the scheduler knows on this worker's host (1 if it cannot say)."""
    from distributed.utils import sync

    host = get_address_host(worker.address)
    try:
        info = sync(worker.loop, worker.scheduler.identity, callback_timeout=5)
    except Exception:  # noqa: BLE001 - a scheduler that does not answer: assume alone
        return 1
    return max(1, sum(get_address_host(a) == host for a in info.get("workers", {})))


def default_threads(worker) -> None:
    """(in a worker, at its first trueno task) the pool and BLAS sizes the plugin would set,
    when neither the plugin nor ``TRUENO_NUM_THREADS`` chose them: pool x the worker's
    threads x the workers on the host <= the cores, BLAS at one thread."""
    if SETTINGS:
        return
    nthreads, on_host = worker.state.nthreads, workers_on_host(worker)
    source = "user" if config.read_num_threads() else "default"
    if source == "user":  # the user's choice stands
        pool = config.NUM_THREADS
    else:
        pool = pool_size(nthreads, on_host)
        set_pool_size(pool)
    SETTINGS.update(
        pool=pool,
        nthreads=nthreads,
        cores=cores(),
        workers_on_host=on_host,
        blas_libs=blas_single_thread(),
        warmed=0,
        trace=False,
        source=source,
    )


class TruenoWorkerPlugin(WorkerPlugin):
    """Register with :func:`register` (or ``client.register_plugin``)."""

    name = "trueno"

    def __init__(
        self, workers_per_host: dict | None = None, trace: bool = False, warm: bool = True
    ) -> None:
        self.workers_per_host = dict(workers_per_host or {})
        self.trace, self.warm = trace, warm

    def setup(self, worker) -> None:
        nthreads = worker.state.nthreads
        host = get_address_host(worker.address)
        explicit = config.read_num_threads()
        if explicit and SETTINGS.get("source") not in ("plugin", "default"):
            # the user's setting wins (set before the plugin and the first task)
            pool = explicit
        else:
            pool = pool_size(nthreads, self.workers_per_host.get(host, 1))
        set_pool_size(pool)
        blas = blas_single_thread()
        warmed = 0
        if self.warm:
            from trueno import warmup

            warmed = warmup(progress=False)
        if self.trace and not recorder.ENABLED:
            recorder.start()
        SETTINGS.update(
            pool=pool,
            nthreads=nthreads,
            cores=cores(),
            workers_on_host=self.workers_per_host.get(host, 1),
            blas_libs=blas,
            warmed=warmed,
            trace=recorder.ENABLED,
            source="plugin",
        )
        from trueno.trace import boot

        boot.LABEL.update(label(worker))


def register(client, warm: bool = True) -> TruenoWorkerPlugin:
    """Register the trueno plugin on every worker of ``client`` (and on later ones)."""
    per_host: dict = {}
    for info in client.scheduler_info()["workers"].values():
        host = info.get("host") or get_address_host(info["id"])
        per_host[host] = per_host.get(host, 0) + 1
    plugin = TruenoWorkerPlugin(per_host, trace=recorder.ENABLED, warm=warm)
    if hasattr(client, "register_plugin"):
        client.register_plugin(plugin)
    else:  # pragma: no cover - distributed < 2023.9
        client.register_worker_plugin(plugin)
    return plugin
