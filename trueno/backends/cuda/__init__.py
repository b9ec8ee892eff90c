"""The CUDA loader: trueno's CUDA C sources (package data ``*.cu``) and their lazy compile.

A kernel source lives beside its CPU twin: the op kernels here (``rowwise.cu``), the GGML
quant matvec in ``trueno/quant/``, the transformer decode kernels in ``trueno/llm/``. The
shared headers (files starting with ``_``) stay in this folder, which is the include path.
Each ``<name>.cu`` compiles to one ``cupy.RawModule`` the first time one of its kernels is
asked for, then stays cached; cupy's own kernel cache keeps the compiled binary across
processes. Sources are found by their file name anywhere in the package, so this loader
imports nothing of the layers that own them. Importing this package does not import cupy.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent  # the op kernels and the shared headers
PACKAGE_DIR = SOURCE_DIR.parent.parent  # trueno/
_lock = threading.Lock()
_modules: dict[str, object] = {}


@cache
def _sources() -> dict[str, Path]:
    """Kernel source name -> path, over the whole package (headers excluded)."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.cu")):
        if path.name.startswith("_"):
            continue
        if path.stem in found:
            raise RuntimeError(f"two CUDA sources named {path.stem!r}: {found[path.stem]}, {path}")
        found[path.stem] = path
    return found


def source_names() -> tuple[str, ...]:
    """The kernel sources (``quant_matvec``, ``rowwise`` ...), headers excluded."""
    return tuple(_sources())


def source_path(name: str) -> Path:
    path = _sources().get(name)
    if path is None:
        raise FileNotFoundError(
            f"no CUDA source {name!r} in {PACKAGE_DIR}; expected one of {', '.join(source_names())}"
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
