"""trueno past one machine: its ops on dask arrays, a worker plugin, one trace per cluster.

``trueno.softmax(dask_array)`` returns a lazy dask array (see :mod:`trueno.dask.array`);
the ops layer reaches that module by name only once a dask array arrives, so ``import
trueno`` stays dask-free. Importing this package registers the capture hook that gathers
every worker's spans into a client-side ``trueno.trace.capture()``.
"""

from __future__ import annotations

from trueno import trace
from trueno.dask.cluster import collect_hook
from trueno.dask.plugin import TruenoWorkerPlugin, register

trace.add_capture_hook(collect_hook)

__all__ = ["TruenoWorkerPlugin", "register"]
