"""Intel AMX tiles: whether they run here, and the IR of the tile steps the int8 GEMM uses.

AMX (Sapphire Rapids and later Xeons) keeps eight tile registers of up to 16 rows x 64 bytes
and multiplies whole tiles in one instruction: ``tdpbsud C, A, B`` adds A (signed bytes, 16
rows x K) times B (unsigned bytes laid out as ``vpdpbusd``'s operands: K / 4 rows, each holding
four bytes of every one of 16 columns) into C, 16 x 16 int32 sums. That is the layout of the
avx512 GEMM panels already (:mod:`trueno.quant.int8pack`): a 32-weight block of 16 packed rows
is one B tile of 8 x 64 bytes.

A tile runs only where all of these hold, and never otherwise (an instruction the CPU lacks,
or tile state Linux has not granted, kills the process):

- the CPU has ``amx-tile`` and ``amx-int8`` (llvmlite's host features);
- numba's code target has them too (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES, the host by default);
- Linux on x86-64 grants this process the tile data state: ``arch_prctl(ARCH_REQ_XCOMP_PERM,
  XFEATURE_XTILEDATA)``, asked once per process, for every thread;
- ``TRUENO_QUANT_AMX=1``: off by default, because the tile GEMM measured no faster than the
  VNNI one (BENCHMARKS.md, twentieth session): each 32-weight block needs its own C tile
  stored and scaled in f32, and (as we read the timings) each product waits on the tile
  registers it shares with the one before.

Each kernel call configures its tiles (``ldtilecfg``: the tile state is per thread) and
releases them at its end.
"""

from __future__ import annotations

import ctypes
import functools
import platform

from llvmlite import ir
from numba.core import cgutils

from trueno import config
from trueno.quant import kernels
from trueno.quant.llvm_ir import I8, I16, I64, x86

FEATURES = ("amx-tile", "amx-int8")
# CPU names numba may be told to compile for (NUMBA_CPU_NAME) that have the features
CPU_NAMES = frozenset(
    "sapphirerapids emeraldrapids graniterapids graniterapids-d diamondrapids".split()
)
_ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA, _SYS_ARCH_PRCTL = 0x1023, 18, 158

VOID = ir.VoidType()


@functools.cache
def missing() -> str | None:
    """Why AMX tiles do not run here (None when they do): the first condition that fails."""
    lacks = kernels.host_lacks(FEATURES)
    if lacks:
        return f"this CPU lacks {', '.join(lacks)}"
    if not kernels.target_has(FEATURES, CPU_NAMES):
        return "numba's code target (NUMBA_CPU_*) lacks amx-tile / amx-int8"
    return _grant()


def _grant() -> str | None:
    """Ask Linux for the tile data state once per process: None when granted, else why not."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"tile state is only requested on Linux x86-64, not {platform.system()}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
        return f"Linux refused the tile data state (errno {ctypes.get_errno()})"
    return None


def available() -> bool:
    """Whether AMX tiles run here (the CPU, numba's target and the grant; not the switch)."""
    return missing() is None


def enabled() -> bool:
    """Whether the int8 GEMM uses AMX tiles now: TRUENO_QUANT_AMX=1, and available."""
    return config.quant_amx() and available()


# ---------------------------------------------------------------------------------------------
# IR of the tile steps: tiles are named by their register number (0-7), as the instructions do.


def _call(builder, name, *args):
    return x86(builder, name, VOID, *args)


def configure(builder, shapes: dict[int, tuple[int, int]]) -> None:
    """``ldtilecfg`` with palette 1 and tile t of ``rows`` x ``colsb`` bytes for each
    ``{t: (rows, colsb)}``; the other tiles stay unused."""
    cfg = cgutils.alloca_once(builder, ir.ArrayType(I8, 64))
    cfg.align = 64
    builder.store(ir.Constant(ir.ArrayType(I8, 64), None), cfg)
    base = builder.bitcast(cfg, I8.as_pointer())
    builder.store(ir.Constant(I8, 1), base)  # palette 1
    for t, (rows, colsb) in shapes.items():
        col_at = builder.bitcast(
            builder.gep(base, [ir.Constant(I64, 16 + 2 * t)]), I16.as_pointer()
        )
        builder.store(ir.Constant(I16, colsb), col_at)
        builder.store(ir.Constant(I8, rows), builder.gep(base, [ir.Constant(I64, 48 + t)]))
    _call(builder, "llvm.x86.ldtilecfg", base)


def zero(builder, t: int) -> None:
    _call(builder, "llvm.x86.tilezero", ir.Constant(I8, t))


def load(builder, t: int, ptr, stride) -> None:
    """Tile t = the rows at i8* ``ptr``, ``stride`` (i64) bytes apart."""
    _call(builder, "llvm.x86.tileloadd64", ir.Constant(I8, t), ptr, stride)


def dot_su(builder, c: int, a: int, b: int) -> None:
    """Tile c += tile a (signed bytes) . tile b (unsigned bytes, four a dword): ``tdpbsud``."""
    _call(builder, "llvm.x86.tdpbsud", ir.Constant(I8, c), ir.Constant(I8, a), ir.Constant(I8, b))


def store(builder, t: int, ptr, stride) -> None:
    _call(builder, "llvm.x86.tilestored64", ir.Constant(I8, t), ptr, stride)


def release(builder) -> None:
    _call(builder, "llvm.x86.tilerelease")
