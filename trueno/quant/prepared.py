"""PreparedWeight: the form the LLM engine keeps for each weight matrix.

Q4_K, Q5_K, Q6_K, F16 and BF16 kernels read the GGML blocks in place (row-major
``(rows, row_bytes)``, no copy of a mmapped file), except that a quantized weight of more than
:data:`PANEL_COLS` columns is copied into contiguous column panels, one kernel each. Q4_0,
Q4_1, Q5_0, Q5_1 and Q8_0 are re-laid once (relayout.py: scales in their own arrays, nibbles
of block pairs interleaved; same byte count) because their per-block scale work, not memory,
bounds the GGML-layout kernel. At the avx512 level every fused type (not the floats) is
re-laid in groups of 16 rows instead (grouped.py: 16 rows per register, each thread's rows
read as a few streams in step), where the rows allow. Backends:

- ``numba-<isa>`` (``numba-avx512``, ``numba-avxvnni``, ``numba-avx2``): the row dot its
  kernel record (kernels.py) names for the ISA level, on int8-quantized activations,
  parallel over rows; F16/BF16 widen to f32 in-register and use FMA.
- ``numba``: portable per-format kernels on f32 activations (no AVX2, TRUENO_QUANT_SIMD=0 or
  TRUENO_QUANT_ISA=portable).
- ``numpy``: F32 through BLAS; Q2_K, Q8_K, IQ4_NL, IQ4_XS (and Q3_K below the avx512 level,
  where grouped.py gives it a kernel) have no fused kernel and are dequantized once to f32 at
  prepare time (4 bytes per weight), then BLAS.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from itertools import pairwise
from time import perf_counter_ns

import numpy as np

from trueno.errors import QuantError
from trueno.gguf.constants import GGMLType
from trueno.quant import api, kernels
from trueno.quant.base import F16_TO_F32, as_ggml_type, as_rows, get_format
from trueno.trace import recorder

MATMUL_TILE_BYTES = 4 << 20  # f32 rows one thread dequantizes per tile in matmul
# up to this many rows a quantized matmul runs as fused matvecs, one per row: reading the
# blocks once per row beats dequantize + BLAS (measured crossover ~12-16 rows for Q4_1/Q5_0
# at 576-2048 columns; more for the K-quants). The one home of this crossover (llm.weights).
MATVEC_ROWS = 12
# A GGML-layout weight (the K-quants on Zen hosts) with more columns than this is kept as
# column panels of at most this many, each a contiguous copy with its own kernel, their
# products summed: a row dot reads the whole int8 activation once per row, and past about
# 12 KB of it the one-vector driver streams slower. Zen 4, 2 threads, six distinct 24 MB
# matrices cycled, the same bytes as (rows, cols) and as (2 rows, cols / 2), medians of 15
# interleaved rounds (GB/s): Q4_K 14336 columns 24.9 -> 33.0, 12288 32.2 -> 34.1; 8192
# unchanged (Q4_K 33.3 / 32.4, Q5_K 33.7 / 34.5, Q6_K 35.4 / 35.8). The grouped layout
# (16 rows per activation read) does not slow there: Q4_0 and Q8_0 at 14336 as at 7168
PANEL_COLS = 8192

_POOL = None
_BLAS = None
_local = threading.local()


def _blas_libs() -> list:
    """threadpoolctl's controllers of the loaded BLAS libraries (found once)."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:  # noqa: BLE001 - no control over BLAS threads: run as is
            _BLAS = []
    return _BLAS


@contextmanager
def single_threaded_blas():
    """BLAS on one thread inside the block (restored after). Enter it once around many
    matmuls (prefill does): raising OpenBLAS's thread count again is not cheap.

    Quantized matmul then runs its own threads, each dequantizing a tile and multiplying it
    while it is in that core's cache; a multi-threaded BLAS's idle workers spin for a while
    after each call, stealing the cores the dequantize runs on (gemma3 prefill ~13% faster)."""
    libs = _blas_libs()
    saved = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, saved, strict=True):
            lib.set_num_threads(n)


def _blas_is_single_threaded() -> bool:
    """True inside :func:`single_threaded_blas` (or when BLAS runs on one thread anyway)."""
    libs = _blas_libs()
    return bool(libs) and all(lib.num_threads == 1 for lib in libs)


def matmul_f32(xs: np.ndarray, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """xs @ w.T for f32 (n, cols) and (rows, cols); inside :func:`single_threaded_blas` the
    rows are split over this module's threads (one BLAS call each)."""
    if out is None:
        out = np.empty((xs.shape[0], w.shape[0]), np.float32)
    if not _blas_is_single_threaded():
        return np.matmul(xs, w.T, out=out)

    def part(lo, hi, _):
        np.matmul(xs, w[lo:hi].T, out=out[:, lo:hi])

    _run_threads(part, 0, w.shape[0], out.T, min_work=1 << 14)
    return out


def _tile_buffer(n: int) -> np.ndarray:
    """This thread's f32 scratch of at least n elements (kept: no page faults per call)."""
    buf = getattr(_local, "tile", None)
    if buf is None or buf.size < n:
        buf = _local.tile = np.empty(n, np.float32)
    return buf[:n]


def _run_threads(kernel, r0: int, r1: int, out: np.ndarray, min_work: int = 1 << 18) -> None:
    """kernel(lo, hi, out_rows) over row chunks on numba's thread count (kernels are nogil)."""
    global _POOL
    import numba

    n_threads = numba.get_num_threads()
    n = r1 - r0
    if n_threads < 2 or n * out.shape[1] < min_work:
        kernel(r0, r1, out)
        return
    if _POOL is None or _POOL._max_workers != n_threads - 1:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(n_threads - 1, thread_name_prefix="trueno-dequant")
    step = -(-n // n_threads)
    jobs = [
        _POOL.submit(kernel, r0 + i, min(r1, r0 + i + step), out[i : i + step])
        for i in range(step, n, step)
    ]
    kernel(r0, min(r1, r0 + step), out[:step])  # the caller takes the first chunk
    for job in jobs:
        job.result()


def _requested_level(simd: bool | None, isa: str | None) -> str:
    """The ISA level a weight's kernels may use (kernels.py): ``isa`` when given (checked
    against the host), portable for ``simd=False``, else the chosen level; ``simd=True``
    refuses portable."""
    if isa is not None:
        return kernels.check_level(isa, "isa")
    if simd is False:
        return "portable"
    level = kernels.chosen_level()
    if simd and level == "portable":
        from trueno.errors import UnsupportedError

        raise UnsupportedError(
            "SIMD quant kernels requested but unavailable (CPU lacks AVX2/FMA/F16C, "
            "TRUENO_QUANT_SIMD=0 or TRUENO_QUANT_ISA=portable)"
        )
    return level


def _int8_matmul(weight, xs: np.ndarray, out: np.ndarray) -> bool:
    """out = xs @ W.T by the int8 prefill kernel (int8mm.py) where its measured crossover
    (type, T) picks it over dequantize + sgemm; False (nothing done) otherwise."""
    if weight._kernel is None or weight.isa == "portable":
        return False
    from trueno.quant import int8mm

    return int8mm.wanted(weight, xs.shape[0]) and int8mm.matmul_into(weight, xs, out)


class PreparedWeight:
    """A 2-D weight ready for fused matvec / tiled matmul. ``shape`` is (rows, cols).

    ``isa``: the ISA level whose fused kernels run (``"avx2"``, later ``"avxvnni"`` /
    ``"avx512"``), ``"portable"`` for the portable numba kernel, None for the numpy path.
    ``relaid``: whether the blocks were re-laid (the GGML bytes are then not kept)."""

    def __init__(
        self,
        blocks: np.ndarray,
        ggml_type,
        shape,
        simd: bool | None = None,
        relayout: bool = True,
        isa: str | None = None,
    ) -> None:
        self.format = get_format(ggml_type)
        self.ggml_type = self.format.ggml_type
        rows, shape = as_rows(blocks, self.format, shape)
        if len(shape) != 2:
            raise QuantError(
                f"prepare {self.format.name}: weight must be 2-D (rows, cols), got shape {shape}"
            )
        self.shape = shape
        self.blocks = rows  # (rows, row_bytes) uint8 view of the caller's data
        self.record = kernels.record(self.ggml_type)  # None: no fused kernels for this type
        self.isa: str | None = None
        self._f32 = None
        self._relaid = None  # relayout.PairedBlocks when re-laid
        self._grouped = None  # grouped.py's records when re-laid in groups of 16 rows
        self._kernel = None  # fused driver (weights, x, xq, dx, xs, bs, out)
        self._multi = None  # its B-vector form, built on first matvecs_into
        self._weights = ()  # the arrays the driver reads: (blocks,), the re-laid four, (records,)
        self._bufs = ()  # activation scratch of matvec_into (int8 x, scales, sums)
        self._act_block = 0  # activations quantized per this many (with a fused kernel)
        self._panels: tuple[PreparedWeight, ...] = ()  # column panels (PANEL_COLS), or none
        self._cuts: tuple[tuple[int, int], ...] = ()  # each panel's columns [c0, c1)
        self._part = None  # matvec_into's partial products of the panels after the first
        level = _requested_level(simd, isa)
        rec = self.record
        if self.ggml_type is GGMLType.F32:
            self.backend = "numpy"
            self._f32 = rows.view(np.float32)
        elif rec is not None and rec.fits(shape[1]) and rec.best_level(level) is not None:
            self._bind(rec, level, relayout)
        elif rec is None and relayout and self._groups(self.format.name, level):
            self._bind_groups(self.format.name, level)  # Q3_K: no kernel record, this layout
        if self._kernel is None and self._f32 is None:  # no SIMD driver, no f32 copy
            if self.format.matvec_numba is not None:
                self.backend = "numba"
                self.isa = "portable"
            else:
                self.backend = "numpy"
                self._f32 = api.dequantize(rows, self.ggml_type, shape)

    def _bind(self, rec, level: str, relayout: bool) -> None:
        """Take the record's best kernel at or below ``level`` (re-laying the blocks, when
        ``relayout`` allows, in groups of 16 rows or for the record's re-laid form)."""
        from trueno.quant import fused

        top = rec.best_level(level)
        lvl = rec.best_level(level, relaid=True) if relayout and rec.relayout else None
        if relayout and self._groups(rec.name, top):
            self._bind_groups(rec.name, top)
            return
        if lvl is not None:
            self._relaid = pb = kernels.resolve(rec.relayout)(self.blocks, rec.name)
            self.blocks = None  # the re-laid copy replaces the GGML bytes
            self._weights = (pb.qs, pb.d, pb.m, pb.qh)
        else:
            lvl = rec.best_level(level)
            if relayout and rec.act_block and self.shape[1] > PANEL_COLS:
                self._bind_panels(level)
                return
            self._weights = (self.blocks,)
        self.isa = lvl
        self.backend = f"numba-{lvl}"
        self._kernel = fused.matvec_kernel(rec, self.relaid, lvl)
        self._act_block = rec.act_block
        self._bufs = fused.new_buffers(self.shape[1], rec.act_block)

    def _bind_panels(self, level: str) -> None:
        """Copy the GGML blocks into column panels of at most PANEL_COLS (whole blocks, as
        even as the block count allows), each a GGML-layout weight with its own kernel."""
        rows, cols = self.shape
        fmt = self.format
        n_blocks = cols // fmt.block_elems
        k = min(-(-cols // PANEL_COLS), n_blocks)  # no empty panel, whatever the bound
        spans = list(pairwise(n_blocks * i // k for i in range(k + 1)))  # blocks [a, b)
        self._cuts = tuple((a * fmt.block_elems, b * fmt.block_elems) for a, b in spans)
        self._panels = tuple(
            PreparedWeight(
                np.ascontiguousarray(self.blocks[:, a * fmt.block_bytes : b * fmt.block_bytes]),
                self.ggml_type,
                (rows, (b - a) * fmt.block_elems),
                isa=level,
                relayout=False,  # the GGML layout, as this weight's own kernel would read
            )
            for a, b in spans
        )
        self.blocks = None  # the panels' copies replace the GGML bytes
        first = self._panels[0]
        self.isa, self.backend, self._act_block = first.isa, first.backend, first._act_block
        self._kernel = first._kernel  # a fused kernel runs (per panel)
        self._part = np.empty(rows, np.float32)

    def _sum_panels(self, out: np.ndarray, part: np.ndarray, product) -> None:
        """out = the sum, in panel order, of ``product(panel, c0, c1, dst)``: the panel (the
        weight's columns [c0, c1)) times those columns of the input, written to ``dst``.
        ``part``: scratch of out's shape. Every form sums in this one order, so a panelled
        weight's one-vector and B-vector products stay equal bit for bit."""
        for i, (p, (c0, c1)) in enumerate(zip(self._panels, self._cuts, strict=True)):
            product(p, c0, c1, out if i == 0 else part)
            if i:
                np.add(out, part, out=out)

    @property
    def panels(self) -> int:
        """How many column panels the weight is kept as (0: one piece)."""
        return len(self._panels)

    def _groups(self, name: str, level: str | None) -> bool:
        from trueno.quant import grouped

        return grouped.applies(name, level, self.shape)

    def _bind_groups(self, name: str, level: str) -> None:
        """Re-lay the blocks in groups of 16 rows (grouped.py) and take its kernels."""
        from trueno.quant import fused, grouped

        self._grouped = grouped.regroup(self.blocks, name)
        self.blocks = None  # the grouped copy replaces the GGML bytes
        self._weights = (self._grouped,)
        self._kernel = grouped.DRIVERS[name].matvec
        self.isa = level
        self.backend = f"numba-{level}"
        self._act_block = grouped.ACT_BLOCK[name]
        self._bufs = fused.new_buffers(self.shape[1], self._act_block)

    @property
    def relaid(self) -> bool:
        """Whether the blocks were re-laid in pairs for the kernel (relayout.py)."""
        return self._relaid is not None

    @property
    def grouped(self) -> bool:
        """Whether the blocks were re-laid in groups of 16 rows (grouped.py)."""
        return self._grouped is not None

    @property
    def multi_vector(self) -> bool:
        """Whether :meth:`matvecs_into` has a B-vector kernel for this weight."""
        return self._kernel is not None

    @property
    def nbytes(self) -> int:
        """Bytes this weight keeps (blocks, paired re-layout, or f32 copy for the fallback)."""
        if self._f32 is not None:
            return int(self._f32.nbytes)
        if self._relaid is not None:
            return int(self._relaid.nbytes)
        if self._grouped is not None:
            return int(self._grouped.nbytes)
        if self._panels:
            return sum(p.nbytes for p in self._panels)
        return int(self.blocks.nbytes)

    def __repr__(self) -> str:
        return (
            f"PreparedWeight({self.format.name}, shape={self.shape}, "
            f"backend={self.backend!r}, nbytes={self.nbytes})"
        )

    def matvec(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """y = W @ x for x of shape (cols,); returns float32 (rows,)."""
        t0 = perf_counter_ns() if recorder.ENABLED else 0
        rows, cols = self.shape
        x = api.check_x(f"{self.format.name} matvec", x, cols)
        if out is None:
            out = np.empty(rows, dtype=np.float32)
        elif out.shape != (rows,) or out.dtype != np.float32:
            raise QuantError(
                f"matvec: out must be float32 of shape ({rows},), got {out.dtype} {out.shape}"
            )
        if self._f32 is not None:
            np.matmul(self._f32, x, out=out)
        elif self._panels:
            from trueno.quant.fused import activation_buffers

            def product(p, c0, c1, dst):
                bufs = activation_buffers(c1 - c0, p._act_block)  # this thread's scratch
                p._kernel(p._weights, x[c0:c1], *bufs, dst)

            self._sum_panels(out, np.empty(rows, np.float32), product)
        elif self._kernel is not None:
            from trueno.quant.fused import activation_buffers

            bufs = activation_buffers(cols, self._act_block)
            self._kernel(self._weights, x, *bufs, out)
        else:
            self.format.matvec_numba(self.blocks, x, F16_TO_F32, out)
        if t0:
            api.record(
                "quant.matvec",
                self.backend,
                self.shape,
                self.format.name,
                self.nbytes,
                2 * rows * cols,
                t0,
            )
        return out

    def matvec_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """out = W @ x without checks, for decode's preallocated buffers: x must be float32
        C-contiguous (cols,), out float32 C-contiguous (rows,). Uses scratch owned by this
        weight: not for concurrent calls on the same weight (``matvec`` is)."""
        if self._kernel is None or recorder.ENABLED:
            self.matvec(x, out=out)
        elif self._panels:  # the panels' own scratch
            self._sum_panels(
                out,
                self._part,
                lambda p, c0, c1, dst: p._kernel(p._weights, x[c0:c1], *p._bufs, dst),
            )
        else:
            self._kernel(self._weights, x, *self._bufs, out)

    def unit_kind(self) -> str | None:
        """The literal naming this weight's one-vector product for :mod:`trueno.quant.
        row_units` (its arrays: ``_weights``, its scratch: ``_bufs``); None where no SIMD
        driver runs it in one piece (the portable kernel, numpy, column panels)."""
        if self._kernel is None or self.isa == "portable" or self._panels:
            return None
        if self._grouped is not None:
            return f"grouped:{self.format.name}"
        from trueno.quant import fused

        rec = self.record
        # the driver's own test of whether it prefetches rows, made once here
        prefetch = rec.prefetch and self._weights[0].strides[0] <= fused.PREFETCH_MAX_ROW_BYTES
        kind = fused.kind_of(rec, self.relaid, self.isa)
        return f"fused:{kind}:{rec.act_block}:{int(prefetch)}"

    def matvecs_into(self, xs: np.ndarray, out: np.ndarray) -> bool:
        """out[b] = W @ xs[b] for B vectors, each weight row read from memory once for all B;
        ``out[b]`` equals ``matvec(xs[b])`` bit for bit. xs (B, cols) and out (B, rows)
        float32 C-contiguous. False (nothing done) when the weight has no fused kernel."""
        if self._kernel is None:
            return False
        if self._panels:
            self._sum_panels(out, np.empty_like(out), lambda p, c0, c1, dst: p.matvecs_into(
                np.ascontiguousarray(xs[:, c0:c1]), dst))  # fmt: skip
            return True
        from trueno.quant import fused

        if self._multi is None:
            if self._grouped is not None:
                from trueno.quant import grouped

                self._multi = grouped.DRIVERS[self.format.name].matvecs
            else:
                self._multi = fused.multi_vector_kernel(self.record, self.relaid, self.isa)
        scratch = fused.multi_scratch(xs.shape[0], self.shape[1], self._act_block)
        self._multi(self._weights, xs, *scratch, out)
        return True

    def matmul(self, xs: np.ndarray) -> np.ndarray:
        """Y = X @ W.T for X of shape (n, cols); returns float32 (n, rows).

        Small batches run the fused matvec per row; larger ones dequantize a bounded tile of
        rows to f32 and hand it to BLAS."""
        t0 = perf_counter_ns() if recorder.ENABLED else 0
        rows, cols = self.shape
        xs = np.asarray(xs)
        if xs.ndim != 2 or xs.shape[1] != cols:
            raise QuantError(f"matmul: X must have shape (n, {cols}), got {xs.shape}")
        xs = np.ascontiguousarray(xs, dtype=np.float32)
        n = xs.shape[0]
        out = np.empty((n, rows), dtype=np.float32)
        self._matmul_into(xs, out)
        if t0:
            api.record(
                "quant.matmul",
                self.backend,
                (n, *self.shape),
                self.format.name,
                self.nbytes,
                2 * n * rows * cols,
                t0,
            )
        return out

    def _matmul_into(self, xs: np.ndarray, out: np.ndarray) -> None:
        """out = xs @ W.T (xs float32 C-contiguous (n, cols), out (n, rows)); records no span
        of its own (a short X's per-row matvecs record theirs)."""
        n = xs.shape[0]
        if self._f32 is not None:
            matmul_f32(xs, self._f32, out)
        elif self._panels:
            self._sum_panels(out, np.empty_like(out), lambda p, c0, c1, dst: p._matmul_into(
                np.ascontiguousarray(xs[:, c0:c1]), dst))  # fmt: skip
        elif n <= MATVEC_ROWS:
            for i in range(n):
                self.matvec(xs[i], out=out[i])
        elif not _int8_matmul(self, xs, out):
            self._dequantize_matmul(xs, out)

    def _dequantize_matmul(self, xs: np.ndarray, out: np.ndarray) -> None:
        """out = xs @ W.T by dequantizing tiles of rows to f32 and multiplying them by BLAS."""
        rows, cols = self.shape
        if _blas_is_single_threaded():  # each thread: dequantize a tile, BLAS on it
            kernel = self._row_kernel()
            tile = max(1, min(rows, MATMUL_TILE_BYTES // (4 * max(cols, 1))))

            def part(lo, hi, _):
                buf = _tile_buffer(tile * cols).reshape(tile, cols)
                for r0 in range(lo, hi, tile):
                    r1 = min(hi, r0 + tile)
                    w = buf[: r1 - r0]
                    kernel(r0, r1, w)
                    np.matmul(xs, w.T, out=out[:, r0:r1])

            _run_threads(part, 0, rows, out.T, min_work=1)
        else:  # threaded dequantize of a large tile, then a threaded BLAS call
            tile = max(1, min(rows, 2 * MATMUL_TILE_BYTES // (4 * max(cols, 1))))
            buf = _tile_buffer(tile * cols).reshape(tile, cols)
            for r0 in range(0, rows, tile):
                r1 = min(rows, r0 + tile)
                w = buf[: r1 - r0]
                self._dequantize_rows(r0, r1, w)
                np.matmul(xs, w.T, out=out[:, r0:r1])

    def dequantize(self) -> np.ndarray:
        """The weight as float32 (rows, cols)."""
        if self._f32 is not None:
            return self._f32.copy()
        if self._panels:
            return np.concatenate([p.dequantize() for p in self._panels], axis=1)
        out = np.empty(self.shape, dtype=np.float32)
        self._dequantize_rows(0, self.shape[0], out)
        return out

    def _dequantize_rows(self, r0: int, r1: int, out: np.ndarray) -> None:
        """Rows [r0, r1) as f32 into ``out`` (r1 - r0, cols), split over threads."""
        _run_threads(self._row_kernel(), r0, r1, out)

    def _row_kernel(self):
        """kernel(lo, hi, dst): rows [lo, hi) as f32 into dst (hi - lo, cols), this thread."""
        pb, fmt, rec = self._relaid, self.format, self.record
        if self._grouped is not None:
            from trueno.quant.grouped import DRIVERS

            deq, recs = DRIVERS[fmt.name].dequantize_rows, self._grouped

            def kernel(lo, hi, dst):
                deq(recs, lo, hi, dst)

        elif pb is not None:
            from trueno.quant.relayout import dequantize_rows

            def kernel(lo, hi, dst):
                dequantize_rows(pb, fmt.name, lo, hi, dst)
        else:
            deq = fmt.dequantize_numba
            if rec is not None and rec.dequantize is not None:
                deq = kernels.resolve(rec.dequantize)

            def kernel(lo, hi, dst):
                blocks = self.blocks[lo:hi].reshape(-1, fmt.block_bytes)
                deq(blocks, F16_TO_F32, dst.reshape(-1, fmt.block_elems))

        return kernel


def prepare(
    blocks: np.ndarray,
    ggml_type,
    shape,
    simd: bool | None = None,
    relayout: bool = True,
    isa: str | None = None,
) -> PreparedWeight:
    """Wrap a 2-D GGML weight for repeated matvec/matmul. ``simd``: None picks the chosen ISA
    level (kernels.chosen_level), False forces the portable kernels, True requires a SIMD
    level. ``isa`` names a level instead (refused, typed, when the host lacks it).
    ``relayout=False`` keeps Q4_0..Q8_0 in GGML layout (no copy; the AVX2 kernel is then
    ~1.5x slower)."""
    return PreparedWeight(
        blocks, as_ggml_type(ggml_type), shape, simd=simd, relayout=relayout, isa=isa
    )
