"""Every TRUENO_* environment variable is read here and nowhere else (tests/test_config.py).

Settings read once at import (tinygrad-style): TRUENO_BACKEND, TRUENO_TRACE,
TRUENO_TRACE_OUTPUT, TRUENO_TRACE_CAPACITY, TRUENO_TRACE_OTLP, TRUENO_TRACE_OTLP_TIMEOUT,
TRUENO_NUM_THREADS, TRUENO_CUDA_GRAPHS. Read per call, by a function, because a caller may change
them while the process runs: TRUENO_QUANT_SIMD and TRUENO_QUANT_ISA (the quant kernels),
TRUENO_DECODE_REGIONS (decode's layers as parallel regions, read when a model builds them),
TRUENO_NUM_THREADS again (a dask worker at set-up), TRUENO_API_KEY (``trueno serve``) and the
variables ``trueno trace run`` hands the programs it launches (TRUENO_TRACE_PARTS,
TRUENO_TRACE_LAUNCH_NS, TRUENO_TRACE_ROOT_PID). A yes/no setting has one spelling of each
answer (:func:`read_flag`); a value a reader does not know is a ConfigError, not a guess.
Nothing here imports numba or cupy."""

from __future__ import annotations

import os
from typing import Any

from trueno.errors import ConfigError

BACKEND_NAMES = ("numpy", "numba", "cupy")


def _read_backend() -> str | None:
    value = os.environ.get("TRUENO_BACKEND", "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in BACKEND_NAMES:
        raise ConfigError(
            f"TRUENO_BACKEND={value!r} is not a backend; expected one of auto, "
            + ", ".join(BACKEND_NAMES)
        )
    return value


_YES = ("1", "true", "on", "yes")
_NO = ("0", "false", "off", "no")


def read_flag(name: str, default: bool) -> bool:
    """A yes/no environment variable: 1/true/on/yes or 0/false/off/no (any case); unset or
    empty gives ``default``."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _YES:
        return True
    if raw in _NO:
        return False
    raise ConfigError(f"{name}={raw!r} is not a yes/no value; expected one of {_YES + _NO}")


def _read_number(
    name: str, default: Any, kind: type[int] | type[float] = int, positive: bool = True
) -> Any:
    """The ``kind`` (int or float) value of variable ``name``, ``default`` when unset; a
    ConfigError when it does not parse, or (``positive``) is not above zero."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if positive and not value > 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def read_num_threads() -> int | None:
    """TRUENO_NUM_THREADS as set now: a positive thread count, None when unset."""
    return _read_number("TRUENO_NUM_THREADS", 0) if os.environ.get("TRUENO_NUM_THREADS") else None


def quant_simd() -> bool:
    """TRUENO_QUANT_SIMD as set now: 0 keeps the quantized kernels portable (default on)."""
    return read_flag("TRUENO_QUANT_SIMD", True)


def decode_regions() -> bool:
    """TRUENO_DECODE_REGIONS as set now: 0 runs decode's layers kernel by kernel, not as
    parallel regions (trueno.llm.decode_layer; default on)."""
    return read_flag("TRUENO_DECODE_REGIONS", True)


def quant_amx() -> bool:
    """TRUENO_QUANT_AMX as set now: 1 runs the int8 GEMM on AMX tiles where the CPU has them
    (default off: no faster than VNNI as measured; trueno.quant.amx checks the host)."""
    return read_flag("TRUENO_QUANT_AMX", False)


def quant_isa() -> str | None:
    """TRUENO_QUANT_ISA as set now, lower case (``avx2``, ``portable`` ...), None when unset;
    trueno.quant.kernels checks the level against the host."""
    return os.environ.get("TRUENO_QUANT_ISA", "").strip().lower() or None


def api_key() -> str | None:
    """TRUENO_API_KEY: the key ``trueno serve`` requires when --api-key is not given."""
    return os.environ.get("TRUENO_API_KEY") or None


# `trueno trace run` hands these to the programs it launches (trueno.trace.runner sets them)
TRACE_PARTS_ENV = "TRUENO_TRACE_PARTS"  # the directory each traced process writes its part to
TRACE_LAUNCH_ENV = "TRUENO_TRACE_LAUNCH_NS"  # epoch ns at which the tracer launched the program
TRACE_ROOT_ENV = "TRUENO_TRACE_ROOT_PID"  # the first traced process (its children add a suffix)


def trace_parts_dir() -> str | None:
    """TRUENO_TRACE_PARTS: where this process writes its part, None outside ``trace run``."""
    return os.environ.get(TRACE_PARTS_ENV) or None


def trace_launch_ns() -> int:
    """TRUENO_TRACE_LAUNCH_NS: when the tracer launched the program (epoch ns), 0 if unset."""
    return _read_number(TRACE_LAUNCH_ENV, 0, positive=False)


def trace_root_pid() -> str | None:
    """TRUENO_TRACE_ROOT_PID: the pid of the first traced process, None before one set it."""
    return os.environ.get(TRACE_ROOT_ENV) or None


FORCED_BACKEND: str | None = _read_backend()
TRACE_ON_START: bool = read_flag("TRUENO_TRACE", False)
TRACE_OUTPUT: str | None = os.environ.get("TRUENO_TRACE_OUTPUT") or None
TRACE_CAPACITY: int = _read_number("TRUENO_TRACE_CAPACITY", 1 << 20)
# TRUENO_TRACE_OTLP=http|grpc (1 = http): a TRUENO_TRACE=1 process also sends its spans over
# OTLP at exit (endpoint from OTEL_EXPORTER_OTLP_ENDPOINT), bounded by TRUENO_TRACE_OTLP_TIMEOUT.
TRACE_OTLP: str | None = {"http": "http", "grpc": "grpc"}.get(
    os.environ.get("TRUENO_TRACE_OTLP", "").strip().lower()
) or ("http" if read_flag("TRUENO_TRACE_OTLP", False) else None)
TRACE_OTLP_TIMEOUT: float = _read_number("TRUENO_TRACE_OTLP_TIMEOUT", 2.0, float)
NUM_THREADS: int | None = read_num_threads()
# TRUENO_CUDA_GRAPHS=0: GPU decode launches its kernels one by one instead of replaying a graph
CUDA_GRAPHS: bool = read_flag("TRUENO_CUDA_GRAPHS", True)
