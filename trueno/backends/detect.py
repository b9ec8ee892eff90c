"""What this machine can do: CPU name and ISA features (from llvmlite's host features), cores
(psutil), numba's threading layer, GPUs (through cupy, when present). Computed once."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass, field

from trueno.cpu import cpu_features, cpu_name


@dataclass(frozen=True)
class GPUInfo:
    index: int
    name: str
    memory_bytes: int
    compute_capability: str


@dataclass(frozen=True)
class Capabilities:
    cpu_name: str
    machine: str
    isa: dict[str, bool]
    physical_cores: int | None
    logical_cores: int | None
    numba_version: str | None
    numba_threading_layer: str | None
    numba_threads: int | None
    cupy_version: str | None
    gpus: tuple[GPUInfo, ...] = field(default_factory=tuple)
    gpu_error: str | None = None

    @property
    def has_avx2(self) -> bool:
        return self.isa.get("avx2", False) and self.isa.get("fma", False)

    def to_dict(self) -> dict:
        return asdict(self)


def _numba_info() -> tuple[str | None, str | None, int | None]:
    try:
        import numba
    except ImportError:
        return None, None, None
    try:
        layer = numba.config.THREADING_LAYER
        try:
            # the layer actually used is known only after a parallel kernel ran
            layer = numba.threading_layer()
        except ValueError:
            pass
    except Exception:  # pragma: no cover - numba internals vary by version
        layer = None
    return numba.__version__, layer, numba.config.NUMBA_NUM_THREADS


def _gpu_info() -> tuple[str | None, tuple[GPUInfo, ...], str | None]:
    try:
        import cupy
    except ImportError:
        return None, (), "cupy is not installed"
    try:
        gpus = []
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            props = cupy.cuda.runtime.getDeviceProperties(i)
            name = props["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            gpus.append(
                GPUInfo(i, name, int(props["totalGlobalMem"]), f"{props['major']}.{props['minor']}")
            )
        return cupy.__version__, tuple(gpus), None
    except Exception as exc:  # no driver / no device: report, never crash
        return cupy.__version__, (), f"{type(exc).__name__}: {exc}"


@functools.lru_cache(maxsize=1)
def capabilities() -> Capabilities:
    """Everything trueno detected about this machine (cached; imports numba and cupy)."""
    import psutil

    numba_version, layer, threads = _numba_info()
    cupy_version, gpus, gpu_error = _gpu_info()
    return Capabilities(
        cpu_name=cpu_name(),
        machine=platform.machine(),
        isa=cpu_features(),
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count(),
        numba_version=numba_version,
        numba_threading_layer=layer,
        numba_threads=threads,
        cupy_version=cupy_version,
        gpus=gpus,
        gpu_error=gpu_error,
    )
