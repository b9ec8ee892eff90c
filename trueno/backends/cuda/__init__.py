"""CUDA C sources of the cupy backend (package data ``*.cu``) and their lazy loader.

Each ``<name>.cu`` (files starting with ``_`` are headers) compiles to one ``cupy.RawModule``
the first time one of its kernels is asked for, then stays cached; cupy's own kernel cache
keeps the compiled binary across processes. Importing this package does not import cupy.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
_lock = threading.Lock()
_modules: dict[str, object] = {}


def source_names() -> tuple[str, ...]:
    """The kernel sources (``quant_matvec``, ``rowwise`` ...), headers excluded."""
    return tuple(sorted(p.stem for p in SOURCE_DIR.glob("*.cu") if not p.name.startswith("_")))


def source_path(name: str) -> Path:
    path = SOURCE_DIR / f"{name}.cu"
    if not path.is_file():
        raise FileNotFoundError(
            f"no CUDA source {name!r} in {SOURCE_DIR}; expected one of {', '.join(source_names())}"
        )
    return path


@cache
def read_source(name: str) -> str:
    return source_path(name).read_text(encoding="utf-8")


def include_options() -> tuple[str, ...]:
    """Compiler options shared by NVRTC (cupy) and nvcc: the header directory."""
    return (f"-I{SOURCE_DIR}",)


def module(name: str):
    """The ``cupy.RawModule`` of source ``name`` (compiled by NVRTC on first use)."""
    mod = _modules.get(name)
    if mod is None:
        with _lock:
            mod = _modules.get(name)
            if mod is None:
                import cupy

                mod = cupy.RawModule(code=read_source(name), options=include_options())
                _modules[name] = mod
    return mod


def function(name: str, kernel: str):
    """One ``extern "C"`` kernel of source ``name`` as a cupy ``RawKernel``-like function."""
    return module(name).get_function(kernel)
