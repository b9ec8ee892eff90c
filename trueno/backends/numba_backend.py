"""The numba backend: CPU kernels compiled by LLVM (SIMD, FMA; threads where it pays).
Importing this module imports numba; dispatch imports it only when an op first runs here."""

from __future__ import annotations

import importlib.util

NAME = "numba"


def available() -> bool:
    return importlib.util.find_spec("numba") is not None


def why_unavailable() -> str:
    return "" if available() else "numba is not installed"


KERNELS: dict = {}

if available():
    from trueno.backends import numba_jit
    from trueno.backends.numba_kernels import register_all

    numba_jit.install()
    register_all(KERNELS)
