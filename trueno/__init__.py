"""trueno: fast numeric code on whatever hardware it lands on, proved by its own traces.

``import trueno`` is cheap: numba, cupy and opentelemetry are imported only when used.
"""

from trueno import trace
from trueno.backends import Backend
from trueno.dispatch import use_backend
from trueno.errors import (
    BackendUnavailableError,
    DivisionByZeroError,
    DTypeError,
    EmptyInputError,
    GGUFError,
    ShapeError,
    SizeMismatchError,
    TruenoError,
)
from trueno.ops import *  # noqa: F403  (the functional API)
from trueno.ops import __all__ as _ops_all
from trueno.vector import Matrix, Vector

__version__ = "0.1.0"


def capabilities():
    """CPU features, cores, numba threading and GPUs detected on this machine."""
    from trueno.backends.detect import capabilities as detect

    return detect()


def warmup(progress: bool | None = None) -> int:
    """Compile every numba kernel now for float32 and float64 (from numba's on-disk cache when
    warm); a progress bar goes to stderr when it is a terminal. Returns the kernels compiled."""
    from trueno.precompile import warmup as _warmup

    return _warmup(progress=progress)


def to_device(x):
    """Copy a host array to the GPU (a traced transfer); needs the ``gpu`` extra."""
    from trueno.device import to_device as _to_device

    return _to_device(x)


def to_host(x):
    """Copy a GPU array back to the host (a traced transfer); host arrays pass through."""
    from trueno.device import to_host as _to_host

    return _to_host(x)


_LAZY_SUBMODULES = ("gguf", "quant", "llm", "device")


def __getattr__(name: str):
    """``trueno.gguf``, ``trueno.quant``, ``trueno.llm``: imported on first access."""
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"trueno.{name}")
    raise AttributeError(f"module 'trueno' has no attribute {name!r}")


__all__ = [
    "to_device",
    "to_host",
    "warmup",
    "Backend",
    "BackendUnavailableError",
    "DTypeError",
    "DivisionByZeroError",
    "EmptyInputError",
    "GGUFError",
    "ShapeError",
    "SizeMismatchError",
    "TruenoError",
    "capabilities",
    "trace",
    "Matrix",
    "Vector",
    "use_backend",
    "__version__",
    *_ops_all,
]
