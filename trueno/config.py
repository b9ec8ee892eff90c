"""Settings read once from the environment at import (tinygrad-style): TRUENO_BACKEND,
TRUENO_TRACE, TRUENO_TRACE_OUTPUT, TRUENO_TRACE_CAPACITY, TRUENO_TRACE_OTLP, TRUENO_NUM_THREADS,
TRUENO_CUDA_GRAPHS, TRUENO_QUANT_SIMD. A yes/no setting has one spelling of each answer
(:func:`read_flag`); a value it does not know is a ConfigError, not a guess.
Nothing here imports numba or cupy."""

from __future__ import annotations

import os

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


def _read_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


FORCED_BACKEND: str | None = _read_backend()
TRACE_ON_START: bool = read_flag("TRUENO_TRACE", False)
TRACE_OUTPUT: str | None = os.environ.get("TRUENO_TRACE_OUTPUT") or None
TRACE_CAPACITY: int = _read_int("TRUENO_TRACE_CAPACITY", 1 << 20)
# TRUENO_TRACE_OTLP=http|grpc (1 = http): a TRUENO_TRACE=1 process also sends its spans over
# OTLP at exit (endpoint from OTEL_EXPORTER_OTLP_ENDPOINT), bounded by TRUENO_TRACE_OTLP_TIMEOUT.
TRACE_OTLP: str | None = {"http": "http", "grpc": "grpc"}.get(
    os.environ.get("TRUENO_TRACE_OTLP", "").strip().lower()
) or ("http" if read_flag("TRUENO_TRACE_OTLP", False) else None)
TRACE_OTLP_TIMEOUT: float = float(os.environ.get("TRUENO_TRACE_OTLP_TIMEOUT", "") or 2.0)
NUM_THREADS: int | None = (
    _read_int("TRUENO_NUM_THREADS", 0) if os.environ.get("TRUENO_NUM_THREADS") else None
)
# TRUENO_CUDA_GRAPHS=0: GPU decode launches its kernels one by one instead of replaying a graph
CUDA_GRAPHS: bool = read_flag("TRUENO_CUDA_GRAPHS", True)
# TRUENO_QUANT_SIMD=0 keeps the quantized kernels portable; trueno.quant.simd reads it per call
