"""A weight's one-vector product cut into units of rows, for callers that run their own
threads (:mod:`trueno.llm.decode_layer`: decode's layers as one parallel region whose threads
take the units). Each unit computes exactly what the weight's own driver computes for
those rows, by the same row (or 16-row group) dot, so the outputs are equal bit for bit.

A weight's *unit kind* (:meth:`~trueno.quant.prepared.PreparedWeight.unit_kind`) is a string
literal that names its driver family, kernel and activation block:

- ``"fused:<type>/<form>/<level>:<block>:<prefetch>"``: fused.py's row dot (block 0: float
  activations; prefetch 1: rows ``PREFETCH_ROWS`` ahead are prefetched, as the driver does);
- ``"grouped:<type>"``: grouped.py's records of 16 rows.

and ``"none"`` stands for an absent weight (no units; q, k and v stacked in one, say).
``units(kind, w)``, ``quantize(kind, x, bufs)`` (once per input, before any unit; ``bufs``
the weight's (xq, dx, xs, bs) scratch) and ``rows(kind, w, x, bufs, out, u)`` are
overloads, specialized per kind at compile time."""

from __future__ import annotations

from numba import types
from numba.extending import overload

from trueno.backends.numba_cache import drop_stale
from trueno.quant import fused, grouped, simd

drop_stale(__file__, (*fused.IR_SOURCES, "fused.py", "grouped.py"))

UNIT_ROWS = 32  # rows of a fused unit (of Q4_1 at 576 columns: 14 KB)
UNIT_GROUPS = 2 * grouped.STREAMS  # 16-row groups of a grouped unit, read as STREAMS runs


def _parse(kind):
    """(family, kernel kind, activation block, prefetch) of a unit kind literal."""
    if not isinstance(kind, types.StringLiteral):
        return None
    if kind.literal_value == "none":
        return "none", "", 0, False
    family, rest = kind.literal_value.split(":", 1)
    if family == "grouped":
        return family, rest, grouped.ACT_BLOCK[rest], False
    name, block, prefetch = rest.split(":")
    return family, name, int(block), prefetch == "1"


def units(kind, w):
    """How many units the weight ``w`` (its driver's arrays) is cut into."""


def quantize(kind, x, bufs):
    """The activation scratch of the units from f32 ``x`` (the driver's first step)."""


def rows(kind, w, x, bufs, out, u):
    """out[rows of unit u] = those rows of W @ x (after :func:`quantize`)."""


_OPTS = dict(prefer_literal=True, jit_options=dict(nogil=True, error_model="numpy"))


@overload(units, **_OPTS)
def _units(kind, w):
    spec = _parse(kind)
    if spec is None:
        return None
    if spec[0] == "none":
        return lambda kind, w: 0
    step = UNIT_GROUPS if spec[0] == "grouped" else UNIT_ROWS

    def impl(kind, w):
        return (w[0].shape[0] + step - 1) // step

    return impl


@overload(quantize, **_OPTS)
def _quantize(kind, x, bufs):
    spec = _parse(kind)
    if spec is None:
        return None
    block = spec[2]
    if not block:  # float activations (or no weight): nothing to do
        return lambda kind, x, bufs: None

    def impl(kind, x, bufs):
        fused.quantize_activations(x, block, bufs[0], bufs[1], bufs[2], bufs[3])

    return impl


@overload(rows, **_OPTS)
def _rows(kind, w, x, bufs, out, u):
    spec = _parse(kind)
    if spec is None:
        return None
    family, name, block, prefetch = spec
    if family == "none":
        return lambda kind, w, x, bufs, out, u: None
    if family == "grouped":
        n_streams = grouped.STREAMS

        def grouped_impl(kind, w, x, bufs, out, u):
            recs, (xq, dx, xs, bs) = w[0], bufs
            xq2, bs2 = xq.reshape((1, xq.size)), bs.reshape((1, bs.size))
            dx2, xs2 = dx.reshape((1, dx.size)), xs.reshape((1, xs.size))
            out2 = out.reshape((1, out.size))
            lo = u * UNIT_GROUPS
            hi = min(recs.shape[0], lo + UNIT_GROUPS)
            n = (hi - lo) // n_streams
            for t in range(n):
                grouped._group_dots(name, recs, lo + t, n, n_streams, xq2, bs2, dx2, xs2, out2,
                                    0, 1)  # fmt: skip
            for g in range(lo + n * n_streams, hi):
                grouped._group_dots(name, recs, g, 0, 1, xq2, bs2, dx2, xs2, out2, 0, 1)

        return grouped_impl
    ahead = fused.PREFETCH_ROWS

    def fused_impl(kind, w, x, bufs, out, u):
        xq, dx, xs, bs = bufs
        xd = dx if block else x
        n_rows = w[0].shape[0]
        lo = u * UNIT_ROWS
        for r in range(lo, min(n_rows, lo + UNIT_ROWS)):
            if prefetch:
                simd.prefetch_row(w[0], r + ahead)
            out[r] = simd.row_dot(name, w, r, xq, xd, xs, bs)

    return fused_impl
