"""Numba kernels, one module per op family. Each module has ``KERNELS`` (op name -> wrapper);
wrappers take validated arrays, allocate the output and call small pure @njit functions."""

from __future__ import annotations

import importlib

FAMILIES = ("elementwise", "libm", "reductions", "stats", "activations", "rowwise", "matrix")


def register_all(table: dict) -> None:
    for family in FAMILIES:
        module = importlib.import_module(f"trueno.backends.numba_kernels.{family}")
        table.update(module.KERNELS)
