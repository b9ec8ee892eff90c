"""One kernel record per GGML type: everything the fused matvec needs to know about a type.

Modelled on ggml's ``type_traits_cpu`` table: a type's row-dot per ISA level, the form its
blocks are re-laid into, the activation quantization it multiplies against (``vec_dot_type``),
its multi-vector dot and its CUDA kernel. Every driver (``fused.py``) and the selection in
``prepared.py`` read this table and nothing else; adding an ISA level means one entry per type
in ``row_dot`` / ``relaid_dot`` (plus the IR bodies it names).

Kernel references are ``"module:attr"`` strings inside ``trueno.quant``, resolved only when a
kernel is built, so this module stays cheap to import (no numba, no llvmlite). The SIMD
references name IR body factories in ``simd.py`` that take the record; ``"portable"`` names the
format module's numba matvec (f32 activations, no int8 rounding).

ISA levels, best first: ``avx512`` (512-bit ``vpdpbusd``), ``avxvnni`` (the 256-bit VNNI
forms), ``avx2``, ``portable``. A level runs only when the host CPU *and* numba's code target
have its features: an instruction the CPU lacks kills the process. ``TRUENO_QUANT_ISA`` forces
a level (refused, typed, when the host lacks it); ``TRUENO_QUANT_SIMD=0`` is the older spelling
of ``TRUENO_QUANT_ISA=portable``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from trueno import config
from trueno.errors import BackendUnavailableError, ConfigError
from trueno.gguf.constants import BLOCK_LAYOUT, GGMLType

ISA_LEVELS = ("avx512", "avxvnni", "avx2", "portable")  # best first
SIMD_LEVELS = ISA_LEVELS[:-1]

# llvmlite host-feature names each level needs (all of them)
ISA_FEATURES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "avx512": ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512vnni"),
        "avxvnni": ("avx2", "fma", "f16c", "avxvnni"),
        "avx2": ("avx2", "fma", "f16c"),
        "portable": (),
    }
)

# CPU names numba may be told to compile for (NUMBA_CPU_NAME) that have a level's features
_AVX2_NAMES = (
    "haswell broadwell skylake skylake-avx512 cascadelake cooperlake cannonlake icelake-client "
    "icelake-server tigerlake rocketlake alderlake raptorlake meteorlake arrowlake "
    "sapphirerapids emeraldrapids graniterapids znver1 znver2 znver3 znver4 znver5 "
    "x86-64-v3 x86-64-v4"
).split()
ISA_CPU_NAMES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "avx512": frozenset(
            "cascadelake cooperlake icelake-client icelake-server tigerlake rocketlake "
            "sapphirerapids emeraldrapids graniterapids znver4 znver5".split()
        ),
        "avxvnni": frozenset(
            "alderlake raptorlake meteorlake arrowlake sapphirerapids emeraldrapids "
            "graniterapids znver5".split()
        ),
        "avx2": frozenset(_AVX2_NAMES),
    }
)

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class KernelRecord:
    """The fused-matvec traits of one GGML type (one row of ggml's type_traits_cpu)."""

    ggml_type: GGMLType
    # the block type the activations are quantized to: Q8_0 (int8, one scale per 32), Q8_K
    # (int8, one scale per 256, int16 sums per 16), or F32 (float weights: no quantization)
    vec_dot_type: GGMLType
    # ISA level -> row dot over the GGML blocks ("simd:<factory>" or "<format>:matvec_numba")
    row_dot: Mapping[str, str]
    # "relayout:<fn>" that re-lays the blocks for relaid_dot once at prepare time, or None
    relayout: str | None = None
    # ISA level -> row dot over the re-laid form
    relaid_dot: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    # the multi-vector dot: vectors one weight decode serves, where the row dot's IR body
    # takes several (simd.Body.vectors: paired, split Q8_0, Q4_K/Q5_K, Q6_K); B vectors then
    # run in groups of this many, the rest one by one (or a pair), all bit-identical to the
    # one-vector dot.
    # (fused's B-vector driver runs a body's lane-per-block form, simd.Body.multi, in groups
    # of that body's multi_vectors instead: 8 at avx512, 4 below; int8mm reads this one.)
    multi_vectors: int = 4
    # layout facts of the 32-weight formats beyond BLOCK_LAYOUT: w = d * (q - zero_point)
    # (+ m when has_min), q's 5th bits in a qh word when has_high
    zero_point: int = 0
    has_min: bool = False
    has_high: bool = False
    cols_multiple: int = 0  # the SIMD row dot needs cols % this == 0 (0: the block size)
    prefetch: bool = True  # software prefetch PREFETCH_ROWS ahead in the row loop
    dequantize: str | None = None  # a faster row dequantizer than the format's, or None
    cuda_kernel: str | None = None  # matvec kernel in quant/quant_matvec.cu

    @property
    def name(self) -> str:
        return self.ggml_type.name

    @property
    def layout(self) -> tuple[int, int]:
        """(elements, bytes) per block: gguf.constants.BLOCK_LAYOUT's, never typed again."""
        return BLOCK_LAYOUT[self.ggml_type]

    @property
    def block_bytes(self) -> int:
        return self.layout[1]

    @property
    def act_block(self) -> int:
        """Activations per int8 scale (32 or 256); 0 when the dot takes f32 activations."""
        if self.vec_dot_type is GGMLType.F32:
            return 0
        return BLOCK_LAYOUT[self.vec_dot_type][0]

    def dots(self, relaid: bool) -> Mapping[str, str]:
        return self.relaid_dot if relaid else self.row_dot

    def best_level(self, level: str, relaid: bool = False) -> str | None:
        """The best SIMD level at or below ``level`` with a row dot for this form, or None."""
        dots = self.dots(relaid)
        for lvl in SIMD_LEVELS[ISA_LEVELS.index(level) :] if level in SIMD_LEVELS else ():
            if lvl in dots:
                return lvl
        return None

    def fits(self, n_cols: int) -> bool:
        """Whether the SIMD row dot takes rows of ``n_cols`` weights."""
        return n_cols % (self.cols_multiple or self.layout[0]) == 0


def _int_levels(ref: str) -> dict[str, str]:
    """The same IR body factory at every SIMD level: the factory takes the level and emits
    its integer dots (llvm_ir.IntDots: vpdpbusd / vpdpwssd with VNNI, vpmaddubsw + vpmaddwd
    on AVX2)."""
    return {lvl: ref for lvl in SIMD_LEVELS}


def _legacy(t, zero_point, has_min=False, has_high=False, cuda=True):
    return KernelRecord(
        t,
        GGMLType.Q8_0,
        {**_int_levels("simd:legacy_dot"), "portable": f"{t.name.lower()}:matvec_numba"},
        relayout="relayout:pair_blocks",
        relaid_dot=_int_levels("simd:paired_dot"),
        zero_point=zero_point,
        has_min=has_min,
        has_high=has_high,
        cuda_kernel=f"matvec_{t.name.lower()}" if cuda else None,
    )


def _kquant(t, dot, cuda, dequantize=None, has_high=False):
    return KernelRecord(
        t,
        GGMLType.Q8_K,
        {**_int_levels(dot), "portable": f"{t.name.lower()}:matvec_numba"},
        has_high=has_high,
        dequantize=dequantize,
        cuda_kernel=f"matvec_{t.name[:-1].lower()}K" if cuda else None,
    )


def _floats(t, dot):
    # 16 weights per AVX2 step; no prefetch (the float drivers never had one: not measured)
    return KernelRecord(
        t,
        GGMLType.F32,
        {"avx2": dot, "portable": f"floats:matvec_{t.name.lower()}_numba"},
        cols_multiple=16,
        prefetch=False,
    )


# in the order the CUDA backend lists its kernels (KERNEL_OF derives from this table)
RECORDS: Mapping[GGMLType, KernelRecord] = MappingProxyType(
    {
        GGMLType.Q4_0: _legacy(GGMLType.Q4_0, 8),
        GGMLType.Q4_1: _legacy(GGMLType.Q4_1, 0, has_min=True),
        GGMLType.Q5_0: _legacy(GGMLType.Q5_0, 16, has_high=True),
        GGMLType.Q5_1: _legacy(GGMLType.Q5_1, 0, has_min=True, has_high=True),
        GGMLType.Q8_0: KernelRecord(
            GGMLType.Q8_0,
            GGMLType.Q8_0,
            {**_int_levels("simd:q8_0_dot"), "portable": "q8_0:matvec_numba"},
            relayout="relayout:pair_blocks",  # d split out, qs kept (no pairs to make)
            relaid_dot=_int_levels("simd:split_q8_0_dot"),
            cuda_kernel="matvec_q8_0",
        ),
        GGMLType.Q4_K: _kquant(GGMLType.Q4_K, "simd:k4_dot", cuda=True),
        GGMLType.Q5_K: _kquant(GGMLType.Q5_K, "simd:k4_dot", cuda=False, has_high=True),
        GGMLType.Q6_K: _kquant(
            GGMLType.Q6_K,
            "simd:q6_k_dot",
            cuda=True,
            # the generic dequantizer does not vectorize (~3.8x slower)
            dequantize="relayout:dequantize_q6_k",
        ),
        GGMLType.F16: _floats(GGMLType.F16, "simd:f16_dot"),
        GGMLType.BF16: _floats(GGMLType.BF16, "simd:bf16_dot"),
    }
)


def record(ggml_type) -> KernelRecord | None:
    """The record of ``ggml_type`` (GGMLType or name), or None for types without fused
    kernels (F32 runs BLAS; Q2_K, Q3_K, IQ4_* are dequantized once)."""
    t = GGMLType[ggml_type] if isinstance(ggml_type, str) else GGMLType(ggml_type)
    return RECORDS.get(t)


@functools.cache
def resolve(ref: str):
    """``"module:attr"`` inside trueno.quant -> the object."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(f"trueno.quant.{module}"), attr)


# ---------------------------------------------------------------------------------------------
# ISA levels of this host


def target_has(features, cpu_names) -> bool:
    """Whether numba's code-generation target (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES, the host
    by default) has ``features`` (llvmlite names) too; ``cpu_names``: the NUMBA_CPU_NAME
    values that have them."""
    from numba.core import config

    if config.CPU_FEATURES:
        flags = set(config.CPU_FEATURES.split(","))
        return all(f"+{f}" in flags for f in features)
    if config.CPU_NAME and config.CPU_NAME != "host":
        return config.CPU_NAME in cpu_names
    return True


def host_lacks(features) -> list[str]:
    """The CPU features (llvmlite names) of ``features`` this host lacks."""
    import llvmlite.binding as llvm

    host = llvm.get_host_cpu_features()
    return [f for f in features if not host.get(f, False)]


def _target_has(level: str) -> bool:
    return target_has(ISA_FEATURES[level], ISA_CPU_NAMES[level])


@functools.cache
def host_levels() -> tuple[str, ...]:
    """The ISA levels this host can run, best first (always ends with ``portable``)."""
    have = [lvl for lvl in SIMD_LEVELS if not host_lacks(ISA_FEATURES[lvl]) and _target_has(lvl)]
    return (*have, "portable")


def missing_features(level: str) -> list[str]:
    """The host CPU features ``level`` needs that this host lacks."""
    return host_lacks(ISA_FEATURES[level])


def check_level(level: str, source: str = "isa") -> str:
    """``level`` if this host can run it; ConfigError for an unknown name,
    BackendUnavailableError for a level the host (or numba's target) lacks."""
    if level not in ISA_LEVELS:
        raise ConfigError(f"{source}={level!r}: expected one of {', '.join(ISA_LEVELS)}")
    if level not in host_levels():
        lacks = ", ".join(missing_features(level)) or "them in numba's target (NUMBA_CPU_*)"
        raise BackendUnavailableError(
            f"{source}={level}: this CPU lacks {lacks}; it runs {', '.join(host_levels())}"
        )
    return level


def chosen_level() -> str:
    """The ISA level the quant kernels use: TRUENO_QUANT_ISA when set (checked against the
    host), portable when TRUENO_QUANT_SIMD is 0, else the best level the host has."""
    forced = config.quant_isa()
    if forced:
        return check_level(forced, "TRUENO_QUANT_ISA")
    if not config.quant_simd():
        return "portable"
    return host_levels()[0]


@dataclass(frozen=True)
class IsaReport:
    """What ``trueno info`` shows: the level chosen, why, and what the host has."""

    chosen: str | None
    host: tuple[str, ...]
    forced: str | None
    error: str | None = None
    kernels: tuple[str, ...] = field(default=())  # levels some record has kernels for

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen,
            "host": list(self.host),
            "forced": self.forced,
            "error": self.error,
            "kernels": list(self.kernels),
        }


def isa_report() -> IsaReport:
    forced = config.quant_isa()
    kernels = tuple(
        lvl
        for lvl in ISA_LEVELS
        if any(lvl in r.row_dot or lvl in r.relaid_dot for r in RECORDS.values())
    )
    try:
        chosen, error = chosen_level(), None
    except (ConfigError, BackendUnavailableError) as exc:
        chosen, error = None, str(exc)
    return IsaReport(chosen, host_levels(), forced, error, kernels)
