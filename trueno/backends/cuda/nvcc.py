"""Compile-check the CUDA sources with nvcc (no GPU needed): ``nvcc -ptx`` per architecture,
all sources in one call, so a syntax or type error in a kernel cannot land unnoticed.

``python -m trueno.backends.cuda.nvcc`` checks sm_80 and sm_90 and exits non-zero on an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trueno.backends.cuda import PACKAGE_DIR, include_options, source_names, source_path

DEFAULT_ARCHS = ("sm_80", "sm_90")


@dataclass(frozen=True)
class CompileResult:
    arch: str
    ok: bool
    ptx: dict[str, str]  # source stem -> PTX text (empty when the compile failed)
    log: str  # nvcc's stderr (warnings or errors)


def find_nvcc() -> str | None:
    """nvcc on PATH, else under $CUDA_HOME / $CUDA_PATH or /usr/local/cuda; None if absent."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


def compile_ptx(
    arch: str, sources: list[Path] | None = None, nvcc: str | None = None, timeout: float = 300.0
) -> CompileResult:
    """Compile ``sources`` (default: every kernel source) to PTX for ``arch`` in one nvcc call."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found on PATH, $CUDA_HOME or /usr/local/cuda")
    paths = list(sources) if sources is not None else [source_path(n) for n in source_names()]
    with tempfile.TemporaryDirectory(prefix="trueno-ptx-") as out:
        cmd = [
            nvcc,
            "-ptx",
            f"-arch={arch}",
            *include_options(),
            "-Werror",
            "all-warnings",
            "-odir",
            out,
            *map(str, paths),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        ptx = {}
        if proc.returncode == 0:
            ptx = {p.stem: (Path(out) / f"{p.stem}.ptx").read_text() for p in paths}
    return CompileResult(arch, proc.returncode == 0, ptx, proc.stderr)


def entry_points(ptx: str) -> list[str]:
    """Kernel names (``.entry``) in a PTX text."""
    return [
        line.split()[2].split("(")[0]
        for line in ptx.splitlines()
        if line.startswith(".visible .entry") or line.startswith(".entry")
    ]


def entry_params(ptx: str) -> dict[str, tuple[str, ...]]:
    """Kernel name -> its parameters' PTX types in order (``u64`` for a pointer, ``u32`` /
    ``s32`` for an int, ``f32``, ``f64``): the launch ABI a caller's argument list must fit."""
    out: dict[str, tuple[str, ...]] = {}
    for block in ptx.split(".entry ")[1:]:
        name, _, rest = block.partition("(")
        params = rest.split(")", 1)[0]
        out[name.strip()] = tuple(
            line.split()[1].lstrip(".") for line in params.splitlines() if ".param" in line
        )
    return out


def main(argv: list[str] | None = None) -> int:
    archs = tuple(argv or sys.argv[1:]) or DEFAULT_ARCHS
    if find_nvcc() is None:
        sys.stderr.write("nvcc not found; nothing checked\n")
        return 0
    status = 0
    for arch in archs:
        res = compile_ptx(arch)
        n = sum(len(entry_points(t)) for t in res.ptx.values())
        sys.stdout.write(
            f"{arch}: {'ok' if res.ok else 'FAILED'} ({n} kernels) from {PACKAGE_DIR}\n{res.log}"
        )
        status |= not res.ok
    return status


if __name__ == "__main__":
    raise SystemExit(main())
