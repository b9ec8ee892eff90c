"""Device-resident arrays, the public face: :func:`to_device` / :func:`to_host`, the opt-in
host fallback (``with trueno.device.allow_host_fallback():``), and device buffers.

The implementation is :mod:`trueno.backends.device`, inside the backends layer, because the
cupy backend's own kernels move arrays and stand in host fallbacks with it; this module sits
above the backends and re-exports it, so a backend never imports a layer above its own."""

from __future__ import annotations

from trueno.backends.device import (
    FALLBACK_BACKEND,
    HostFallback,
    allow_host_fallback,
    cupy,
    host_fallback_allowed,
    is_device_array,
    synchronize,
    to_device,
    to_host,
    zeros,
)

__all__ = [
    "FALLBACK_BACKEND",
    "HostFallback",
    "allow_host_fallback",
    "cupy",
    "host_fallback_allowed",
    "is_device_array",
    "synchronize",
    "to_device",
    "to_host",
    "zeros",
]
