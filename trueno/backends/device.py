"""Device-resident arrays: :func:`to_device` / :func:`to_host`, and the opt-in host fallback.

Every host<->device copy is a traced span (category ``"transfer"``, backend ``"cupy"``, with
its bytes), so the trace rules can weigh copies against kernels. A device array meeting an op
the GPU backend lacks raises :class:`~trueno.errors.UnsupportedError`; inside
``with trueno.device.allow_host_fallback():`` the op instead runs on the host reference,
traced as a ``"fallback"`` span plus the copies it needed. cupy is imported only here, lazily.
The cupy backend uses this module directly; everything above the backends uses its public
face, :mod:`trueno.device`.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from trueno import backends
from trueno.backends import Backend
from trueno.errors import UnsupportedError
from trueno.trace import recorder

_allow_fallback: ContextVar[bool] = ContextVar("trueno_host_fallback", default=False)
FALLBACK_BACKEND = "numpy(fallback from cupy)"


def cupy():
    """The cupy module; raises BackendUnavailableError (an ImportError) naming the ``gpu``
    extra when cupy or a CUDA device is missing."""
    backends.load(Backend.CUPY)
    import cupy as cp

    return cp


def is_device_array(x) -> bool:
    """True for a cupy array, answered without importing cupy."""
    return "cupy" in sys.modules and type(x).__module__.startswith("cupy")


def to_device(x, dtype=None):
    """Copy a host array (or array-like) to the GPU; device arrays pass through (cast to
    ``dtype`` if given). Traced as a ``to_device`` transfer span with the bytes copied."""
    cp = cupy()
    if is_device_array(x):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    a = np.ascontiguousarray(x, dtype=dtype)
    if not recorder.ENABLED:
        return cp.asarray(a)
    with recorder.span(
        "to_device",
        category="transfer",
        backend="cupy",
        bytes=a.nbytes,
        shape=str(a.shape),
        dtype=str(a.dtype),
        direction="h2d",
    ):
        out = cp.asarray(a)  # pageable host memory: the copy is complete on return
    return out


def to_host(x) -> np.ndarray:
    """Copy a GPU array back to a numpy array; host values pass through untouched. Traced as
    a ``to_host`` transfer span with the bytes copied."""
    if not is_device_array(x):
        return x
    if not recorder.ENABLED:
        return x.get()
    with recorder.span(
        "to_host",
        category="transfer",
        backend="cupy",
        bytes=int(x.nbytes),
        shape=str(tuple(x.shape)),
        dtype=str(x.dtype),
        direction="d2h",
    ):
        out = x.get()
    return out


@contextmanager
def allow_host_fallback(allow: bool = True):
    """Inside this block, an op the GPU backend lacks runs on the host reference instead of
    raising; each such run is traced as a fallback span plus its copies."""
    token = _allow_fallback.set(allow)
    try:
        yield
    finally:
        _allow_fallback.reset(token)


def host_fallback_allowed() -> bool:
    return _allow_fallback.get()


class HostFallback:
    """Stands in the cupy kernel table for an op only the host reference implements."""

    __slots__ = ("name",)
    fallback_from = "cupy"  # dispatch labels the op span "numpy(fallback from cupy)"

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args, **kwargs):
        if not _allow_fallback.get():
            raise UnsupportedError(
                f"op {self.name!r} has no cupy kernel and host fallback is off; expected a "
                "GPU op. Move the data with trueno.to_host(), or allow the copy with "
                "`with trueno.device.allow_host_fallback():`"
            )
        ref = backends.load(Backend.NUMPY).KERNELS[self.name]
        on_device = any(is_device_array(a) for a in args)
        host_args = tuple(to_host(a) for a in args)
        host_kwargs = {k: to_host(v) for k, v in kwargs.items()}
        with recorder.span(self.name, category="fallback", backend=FALLBACK_BACKEND, wanted="cupy"):
            out = ref(*host_args, **host_kwargs)
        if on_device and isinstance(out, np.ndarray):
            return to_device(out)
        return out


def zeros(shape, dtype=np.float32):
    """A zero-filled device array (KV caches, scratch buffers), allocated once by the caller."""
    return cupy().zeros(shape, dtype=dtype)


def synchronize() -> None:
    """Wait for the current device's queued work (for honest timings and trace spans)."""
    cupy().cuda.get_current_stream().synchronize()
