"""The versioned trace file: environment fingerprint, runs and spans.

A trace is a JSON object::

    {"schema": "trueno.trace", "version": 1, "name": ..., "command": [...],
     "fingerprint": {...}, "runs": [{...}, ...], "spans": [{..., "run": 0}, ...]}

``runs`` hold what was measured per run (wall, startup, CPU user/sys, max RSS, exit code,
dropped spans, syscalls); a field that was not measured is ``null``, never a guess.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
from pathlib import Path

from trueno.errors import ConfigError

SCHEMA = "trueno.trace"
VERSION = 1
SPAN_KEYS = (
    "id",
    "parent",
    "thread",
    "name",
    "category",
    "start_ns",
    "dur_ns",
    "backend",
    "shape",
    "dtype",
    "bytes",
    "flops",
)
RUN_KEYS = (
    "wall_ns",
    "startup_ns",
    "cpu_user_s",
    "cpu_sys_s",
    "max_rss_bytes",
    "exit_code",
    "dropped",
    "syscalls",
    "processes",
    "epoch_ns",
)


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_sha(cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def gpus() -> list[str]:
    """GPUs trueno could use here: ``nvidia-smi -L`` names when cupy is installed, else []
    (cheap: cupy itself is not imported)."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("cupy") is None or not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(" (UUID")[0] for line in out.stdout.splitlines() if line.strip()]


@functools.lru_cache(maxsize=1)
def fingerprint() -> dict:
    """Where the trace was taken: CPU, ISA, cores, versions, git SHA."""
    from trueno.cpu import cpu_features, cpu_name

    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        physical = None
    isa = cpu_features()
    return {
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "isa": sorted(k for k, v in isa.items() if v),
        "physical_cores": physical,
        "logical_cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.system(),
        "trueno": _version("trueno"),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "git_sha": git_sha(str(Path(__file__).resolve().parents[2])),
        "gpus": gpus(),
    }


def same_machine(a: dict, b: dict) -> bool:
    """Whether two fingerprints describe comparable hardware (CPU, ISA, cores, GPUs)."""
    keys = ("cpu", "machine", "isa", "logical_cores")
    return all(a.get(k) == b.get(k) for k in keys) and same_devices(a, b)


def same_devices(a: dict, b: dict) -> bool:
    """Both have usable GPUs or neither has (a GPU changes which ops and copies run)."""
    return bool(a.get("gpus")) == bool(b.get("gpus"))


def make_trace(
    spans: list[dict],
    runs: list[dict],
    name: str = "",
    command=None,
    fp: dict | None = None,
    epoch_ns: int | None = None,
) -> dict:
    """Assemble a trace; ``epoch_ns`` is the wall-clock time (ns) of ``start_ns == 0``."""
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "name": name,
        "command": list(command or []),
        "epoch_ns": epoch_ns,
        "fingerprint": fp if fp is not None else fingerprint(),
        "runs": [{k: run.get(k) for k in RUN_KEYS} | {"index": i} for i, run in enumerate(runs)],
        "spans": spans,
    }


def dump(trace: dict, path) -> None:
    """Write a trace file (never to stdout)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(trace, separators=(",", ":")))
    tmp.replace(path)


def load(path) -> dict:
    """Read and validate a trace file; a wrong schema or version is a ConfigError."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"trace file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"trace file {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ConfigError(
            f"{path}: expected a {SCHEMA} file, found schema "
            f"{data.get('schema') if isinstance(data, dict) else type(data)!r}"
        )
    if data.get("version") != VERSION:
        raise ConfigError(f"{path}: trace version {data.get('version')!r}, expected {VERSION}")
    for key in ("runs", "spans"):
        if not isinstance(data.get(key), list):
            raise ConfigError(f"{path}: field {key!r} missing or not a list")
    return data


def spans_of_run(trace: dict, run: int = 0) -> list[dict]:
    return [s for s in trace["spans"] if s.get("run", 0) == run]
