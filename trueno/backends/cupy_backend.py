"""The cupy backend: the compute core's ops on an NVIDIA GPU.

- element-wise ops and activations: one fused ``cupy.ElementwiseKernel`` each, built from the
  expressions in :mod:`trueno.backends.cuda.elementwise` (the same text the CPU tests run);
- reductions: cupy's reductions and ``ReductionKernel`` s (norms, sum of squares);
- softmax, log_softmax, layer_norm, rms_norm: one CUDA kernel each (``cuda/rowwise.cu``);
- matmul / matvec: cuBLAS through ``cupy.matmul``.

Importing this module imports cupy only when cupy is installed and a device answers.
Host (numpy) inputs are copied to the device and the result back, each copy a traced
transfer; device inputs stay on the device. An op without a cupy kernel raises
:class:`~trueno.errors.UnsupportedError` unless the caller allows a host fallback
(:func:`trueno.device.allow_host_fallback`), which is then traced.
"""

from __future__ import annotations

import importlib
import importlib.util

NAME = "cupy"

_status: tuple[bool, str] | None = None


def probe(find_spec=importlib.util.find_spec, importer=importlib.import_module) -> tuple[bool, str]:
    """(available, reason): cupy installed, importable, and at least one CUDA device.
    Never raises: a missing driver or a broken install is a reason, not an exception."""
    try:
        if find_spec("cupy") is None:
            return False, "cupy is not installed"
    except Exception as exc:  # a broken finder or a half-installed package
        return False, f"cupy could not be located ({type(exc).__name__}: {exc})"
    try:
        cupy = importer("cupy")
    except Exception as exc:
        return False, f"cupy is installed but failed to import ({type(exc).__name__}: {exc})"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError: no driver, driver too old, no device node
        return False, f"the CUDA driver/runtime reported an error ({type(exc).__name__}: {exc})"
    if count < 1:
        return False, "no CUDA device found (cupy is installed, the driver reports 0 devices)"
    return True, ""


def available() -> bool:
    """Cached: cupy importable and a CUDA device present."""
    global _status
    if _status is None:
        _status = probe()
    return _status[0]


def why_unavailable() -> str:
    available()
    return _status[1] if _status else ""


class _KernelTable(dict):
    """Op name -> kernel. Ops the GPU lacks but the reference has resolve to a host fallback
    that raises unless the caller allowed it (checked per call, so dispatch may cache it)."""

    def get(self, name, default=None):
        fn = dict.get(self, name)
        if fn is not None:
            return fn
        from trueno import backends

        if name in backends.load(backends.Backend.NUMPY).KERNELS:
            from trueno.backends.device import HostFallback

            fn = HostFallback(name)
            self[name] = fn
            return fn
        return default


KERNELS: dict = _KernelTable()

if available():
    from trueno.backends.cuda.ops import register_all

    register_all(KERNELS)
