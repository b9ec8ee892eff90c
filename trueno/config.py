"""Settings read once from the environment at import (tinygrad-style): TRUENO_BACKEND,
TRUENO_TRACE, TRUENO_TRACE_OUTPUT, TRUENO_TRACE_CAPACITY, TRUENO_TRACE_OTLP, TRUENO_NUM_THREADS,
TRUENO_CUDA_GRAPHS.
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
TRACE_ON_START: bool = os.environ.get("TRUENO_TRACE", "").strip() not in ("", "0", "false", "off")
TRACE_OUTPUT: str | None = os.environ.get("TRUENO_TRACE_OUTPUT") or None
TRACE_CAPACITY: int = _read_int("TRUENO_TRACE_CAPACITY", 1 << 20)
# TRUENO_TRACE_OTLP=http|grpc (1 = http): a TRUENO_TRACE=1 process also sends its spans over
# OTLP at exit (endpoint from OTEL_EXPORTER_OTLP_ENDPOINT), bounded by TRUENO_TRACE_OTLP_TIMEOUT.
TRACE_OTLP: str | None = {"1": "http", "true": "http", "http": "http", "grpc": "grpc"}.get(
    os.environ.get("TRUENO_TRACE_OTLP", "").strip().lower()
)
TRACE_OTLP_TIMEOUT: float = float(os.environ.get("TRUENO_TRACE_OTLP_TIMEOUT", "") or 2.0)
NUM_THREADS: int | None = (
    _read_int("TRUENO_NUM_THREADS", 0) if os.environ.get("TRUENO_NUM_THREADS") else None
)
# TRUENO_CUDA_GRAPHS=0: GPU decode launches its kernels one by one instead of replaying a graph
CUDA_GRAPHS: bool = os.environ.get("TRUENO_CUDA_GRAPHS", "").strip().lower() not in (
    "0",
    "false",
    "off",
)
