"""Backends: ``numpy`` (the executable specification, always there), ``numba`` (CPU SIMD and
threads), ``cupy`` (GPU). Each lives in its own module, found by name and imported only when
first asked for; backends never import each other.

A backend module exposes ``NAME``, ``available() -> bool``, ``why_unavailable() -> str`` and
``KERNELS``: a dict from op name to a function taking validated arrays (and the op's keyword
parameters) and returning the result.
"""

from __future__ import annotations

import importlib
import sys
from enum import Enum
from types import ModuleType

from trueno.errors import BackendUnavailableError


class Backend(str, Enum):
    AUTO = "auto"
    NUMPY = "numpy"
    NUMBA = "numba"
    CUPY = "cupy"

    def __str__(self) -> str:
        return self.value


_MODULES = {
    Backend.NUMPY: "trueno.backends.numpy_backend",
    Backend.NUMBA: "trueno.backends.numba_backend",
    Backend.CUPY: "trueno.backends.cupy_backend",
}
_EXTRA = {
    Backend.NUMBA: "numba (a core dependency: pip install trueno)",
    Backend.CUPY: "cupy (pip install 'trueno[gpu]') and a CUDA device",
}
_loaded: dict[Backend, ModuleType] = {}
_availability: dict[Backend, bool] = {}


def parse(name: str | Backend) -> Backend:
    """'numba' or Backend.NUMBA -> Backend.NUMBA; anything else is a clear error."""
    if isinstance(name, Backend):
        return name
    try:
        return Backend(str(name).strip().lower())
    except ValueError:
        names = ", ".join(b.value for b in Backend)
        raise BackendUnavailableError(
            f"unknown backend {name!r}; expected one of {names}"
        ) from None


def is_available(backend: Backend) -> bool:
    """Whether a backend can run here (cached; imports nothing heavy for numpy)."""
    ok = _availability.get(backend)
    if ok is None:
        if backend is Backend.NUMPY:
            ok = True
        elif backend is Backend.AUTO:
            ok = True
        else:
            try:
                ok = bool(_import(backend).available())
            except ImportError:
                ok = False
        _availability[backend] = ok
    return ok


def _import(backend: Backend) -> ModuleType:
    """The backend's module. Importing numba's (numba itself, then the kernels' definitions)
    is start-up cost that lands in the first op using it: a ``numba.import`` JIT span."""
    from time import perf_counter_ns

    from trueno.trace import recorder

    name = _MODULES[backend]
    if backend is not Backend.NUMBA or name in sys.modules or not recorder.ENABLED:
        return importlib.import_module(name)
    t0 = perf_counter_ns()
    had_numba = "numba" in sys.modules
    try:
        return importlib.import_module(name)
    finally:
        recorder.jit_event(
            "numba.import", t0, perf_counter_ns() - t0, numba_already_imported=had_numba
        )


def load(backend: Backend) -> ModuleType:
    """The backend module, imported on first use; raises if it cannot run here."""
    module = _loaded.get(backend)
    if module is not None:
        return module
    if not is_available(backend):
        reason = ""
        try:
            reason = importlib.import_module(_MODULES[backend]).why_unavailable()
        except ImportError as exc:
            reason = str(exc)
        raise BackendUnavailableError(
            f"backend {backend.value!r} is not available: {reason or 'not installed'}; "
            f"it needs {_EXTRA.get(backend, '?')}"
        )
    module = importlib.import_module(_MODULES[backend])
    _loaded[backend] = module
    return module
