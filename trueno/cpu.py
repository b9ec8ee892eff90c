"""The host CPU: its name and ISA features as llvmlite (LLVM) sees them, computed once.

A leaf module (bottom layer): the trace fingerprint and the backends' capabilities both read
it, and it imports nothing of trueno."""

from __future__ import annotations

import functools
import platform

ISA_FEATURES = (
    "sse2",
    "sse4.2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vnni",
    "avx512bf16",
    "avxvnni",
)


@functools.lru_cache(maxsize=1)
def cpu_features() -> dict[str, bool]:
    """ISA features of the host CPU as llvmlite (LLVM) sees them: {'avx2': True, ...}."""
    try:
        import llvmlite.binding as llvm
    except ImportError:
        return {
            name: name == "sse2" and platform.machine() in ("x86_64", "AMD64")
            for name in ISA_FEATURES
        }
    flags = {}
    for item in llvm.get_host_cpu_features().flatten().split(","):
        if item:
            flags[item[1:]] = item[0] == "+"
    return {name: flags.get(name, False) for name in ISA_FEATURES}


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        import llvmlite.binding as llvm

        return llvm.get_host_cpu_name()
    except ImportError:
        return platform.processor() or platform.machine()


def amd_zen() -> bool:
    """Whether the host is an AMD Zen core (llvmlite's ``znver*``): kernels whose best
    prefetch or stream settings were measured to differ there read this."""
    return cpu_name().startswith("znver")
