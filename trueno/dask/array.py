"""trueno's ops on dask arrays: lazy graphs whose tasks run trueno's kernels per chunk.

Reached from the ops layer by name (``_validate.lazy_array`` checks each input,
``dispatch.run`` hands the op here) only once a dask array arrives. The op's kind in
:mod:`trueno.opspec` picks the strategy:

- element-wise kinds: ``map_blocks`` with ``meta`` (dask never calls a kernel on fake data,
  and cupy chunks stay cupy);
- row-wise ops (softmax, log_softmax, layer_norm, rms_norm): the last axis rechunked to one
  chunk (a ``DaskRechunkWarning`` when that moves data), then ``map_blocks``;
- reductions: each block's partial from trueno's kernel, then a ``da.reduction`` whose one
  aggregate task merges every partial and gives the final value (a flat tree: see
  :func:`flat_split`); argmax/argmin carry global flat indices and ties go to the first
  index (NaN first, as numpy);
- matmul: ``da.blockwise`` with trueno/BLAS per block pair, partial products summed over k;
  matvec and vecmat are matmul with the vector as one column or row.

Anything else raises UnsupportedError before a graph is built; nothing is computed here.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from functools import partial

import dask.array as da
import numpy as np

from trueno import dispatch
from trueno.errors import DivisionByZeroError, DTypeError, ShapeError, UnsupportedError
from trueno.opspec import OPS, OpSpec
from trueno.trace import capturing, recorder

ELEMENTWISE_KINDS = frozenset(
    {
        "elementwise",
        "compute",
        "fma",
        "clip",
        "transcendental",
        "trig",
        "log",
        "hyperbolic",
        "fused",
        "libm",
    }
)
ROWWISE = frozenset({"softmax", "log_softmax", "layer_norm", "rms_norm"})
MATRIX = frozenset({"matmul", "matvec", "vecmat"})  # the vector ops: matmul on a column/row
GLOBAL = frozenset({"normalize", "zscore", "minmax_normalize"})  # whole-array stats, then map
PAIRED = frozenset({"covariance", "correlation"})  # co-moment reductions of two arrays
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class DaskRechunkWarning(UserWarning):
    """A row-wise op rechunked its input so that each row is one chunk (data moves)."""


# ---- reductions: per-block partial (structured, on the host), combine, final value ----
_SUM = np.dtype([("s", "f8")])
_MOM = np.dtype([("n", "f8"), ("m", "f8"), ("m2", "f8")])
_ARG = np.dtype([("v", "f8"), ("i", "i8")])


def _sum_block(spec_name):
    return lambda blocks, info: (float(_kernel(spec_name, blocks)),)


def _combine_sum(p):
    return (np.sum(p["s"]),)


def _combine_max(p):
    return (np.max(p["s"]),)


def _combine_min(p):
    return (np.min(p["s"]),)


def _moments_block(blocks, info):
    x = blocks[0]
    n = x.size
    if n == 0:  # an empty block adds nothing
        return (0.0, 0.0, 0.0)
    m2 = float(_kernel("variance", (x, 0))) * n
    # a block without spread is all one value: that value is its exact mean (so a constant
    # input's blocks agree exactly and its m2 stays 0, as on the host)
    m = float(x.reshape(-1)[0]) if m2 == 0 else float(_kernel("mean", (x,)))
    return (float(n), m, m2)


def _combine_moments(p):  # Chan et al.'s parallel merge, over all the partials at once
    if (p["n"] > 0).any():
        p = p[p["n"] > 0]  # empty blocks add nothing
    n, m, m2 = p["n"], p["m"], p["m2"]
    total = n.sum()
    # the mean shifted by the first block's: exact when every block has the same mean (a
    # constant input then has m2 == 0 exactly, as on the host)
    mean = m[0] + (n * (m - m[0])).sum() / total
    return (total, mean, (m2 + n * (m - mean) ** 2).sum())


def _arg_block(name):
    def block(blocks, info):
        x = blocks[0]
        if x.size == 0:  # an empty block never wins (nor ties: the largest index)
            return (-np.inf if name == "argmax" else np.inf, np.iinfo(np.int64).max)
        local = int(_kernel(name, (x,)))
        loc = info[0]["array-location"]
        idx = np.unravel_index(local, x.shape)
        gidx = np.ravel_multi_index(
            tuple(lo + i for (lo, _), i in zip(loc, idx, strict=True)), info[0]["shape"]
        )
        return (float(x.reshape(-1)[local]), int(gidx))

    return block


def _combine_arg(largest: bool):
    def combine(p):
        v, i = p["v"], p["i"]
        nan = np.isnan(v)
        if nan.any():  # the first NaN wins, as numpy
            k = np.argmin(np.where(nan, i, np.iinfo(np.int64).max))
            return (v[k], i[k])
        best = v.max() if largest else v.min()
        k = np.argmin(np.where(v == best, i, np.iinfo(np.int64).max))  # ties: first index
        return (v[k], i[k])

    return combine


def _final_sum(p, dt):
    return dt.type(p["s"])


# name -> (partial dtype, block partial, combine, final(partial, input dtype) -> value, out dtype)
REDUCTIONS = {
    "sum": (_SUM, _sum_block("sum"), _combine_sum, _final_sum, None),
    "sum_kahan": (_SUM, _sum_block("sum_kahan"), _combine_sum, _final_sum, None),
    "sum_of_squares": (_SUM, _sum_block("sum_of_squares"), _combine_sum, _final_sum, None),
    "norm_l1": (_SUM, _sum_block("norm_l1"), _combine_sum, _final_sum, None),
    "norm_l2": (
        _SUM,
        _sum_block("sum_of_squares"),
        _combine_sum,
        lambda p, dt: dt.type(np.sqrt(p["s"])),
        None,
    ),
    "norm_linf": (_SUM, _sum_block("norm_linf"), _combine_max, _final_sum, None),
    "max": (_SUM, _sum_block("max"), _combine_max, _final_sum, None),
    "min": (_SUM, _sum_block("min"), _combine_min, _final_sum, None),
    "dot": (_SUM, _sum_block("dot"), _combine_sum, _final_sum, None),
    "mean": (_MOM, _moments_block, _combine_moments, lambda p, dt: dt.type(p["m"]), None),
    "variance": (_MOM, _moments_block, _combine_moments, None, None),  # final needs ddof
    "stddev": (_MOM, _moments_block, _combine_moments, None, None),
    "argmax": (
        _ARG,
        _arg_block("argmax"),
        _combine_arg(True),
        lambda p, dt: np.int64(p["i"]),
        np.dtype(np.int64),
    ),
    "argmin": (
        _ARG,
        _arg_block("argmin"),
        _combine_arg(False),
        lambda p, dt: np.int64(p["i"]),
        np.dtype(np.int64),
    ),
}


def supported(name: str) -> bool:
    spec = OPS.get(name)
    if spec is None:
        return False
    return (
        spec.kind in ELEMENTWISE_KINDS
        or name in ROWWISE
        or name in REDUCTIONS
        or name in MATRIX
        or name in GLOBAL
        or name in PAIRED
        or name == "transpose"
    )


def accept(x, op: str):
    """``x`` (a dask array) checked for ``op``: a float32/float64 dask array (ints and bools
    become float64 lazily, as the host path). Raises UnsupportedError for ops without a dask
    strategy, without computing anything."""
    if not isinstance(x, da.Array):
        raise DTypeError(f"{op}: {type(x).__module__}.{type(x).__name__} is not a dask array")
    if not supported(op):
        raise UnsupportedError(
            f"{op}: not supported on dask arrays (nothing was computed); supported: "
            "element-wise ops and activations, softmax, log_softmax, layer_norm, rms_norm, "
            f"{', '.join(sorted({*REDUCTIONS, *GLOBAL, *PAIRED}))}, matmul, matvec, vecmat, "
            "transpose"
        )
    dt = x.dtype
    if dt in FLOAT_DTYPES:
        return x
    if dt.kind in "biu":
        return x.astype(np.float64)
    if dt.kind == "f":
        return x.astype(np.float32 if dt.itemsize < 4 else np.float64)
    raise DTypeError(f"{op}: unsupported dtype {dt}; expected float32 or float64")


# ---- tasks (module-level, picklable; they run on the workers) ----


def _kernel(name: str, args: tuple):
    spec = OPS[name]
    first = args[0]
    return dispatch.run(spec, first.size, tuple(args))


def _traced(trace: int) -> None:
    """A task built inside a client's ``trace.capture()`` (``trace``: the pid of the process that
    built it, 0 outside a capture) arms a worker process: a recorder of the capture's own, on top of
    any that was on, until the capture's exit drains it (``disarm``). In the process that built the
    graph (the sync or threaded scheduler, an in-process worker) it is the client's own capture that
    records, and nothing is left on after it. The first task in a worker also sizes trueno's pool
    from the worker's threads (when neither the plugin nor the user did), installs the output buffer
    pool (:mod:`trueno.dask.buffers`) and names the process for merged traces."""
    if not _WORKER_READY:
        _worker_ready()
    if trace and trace != os.getpid() and not _ARMED:
        with _ARM_LOCK:
            if not _ARMED:  # a recorder of the capture's own, on top of any already on
                _ARMED.append(recorder.current() if recorder.ENABLED else None)
                recorder.start()


# (in a worker) while a client's capture records here: [the recorder it found on, or None];
# the capture's exit drains the capture's recorder and puts that one back (disarm), so the
# spans of a worker that traces itself (``trueno trace run``, the plugin) are never gathered
# twice, nor lost
_ARMED: list = []
_ARM_LOCK = threading.Lock()


def disarm() -> bool:
    """(in a worker) end the recording a traced task began here (see ``_traced``): the
    recorder that was on before it is current again, or none is on. Whether one was armed."""
    with _ARM_LOCK:
        if not _ARMED:
            return False
        previous = _ARMED.pop()
        recorder.stop()
        if previous is not None:
            recorder._recorder = previous
            recorder.ENABLED = True
        return True


_WORKER_READY: list = []  # non-empty once _worker_ready ran in this process


def _worker_ready() -> None:
    _WORKER_READY.append(True)
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not in a distributed worker (sync/threaded scheduler)
        return
    try:
        from distributed import default_client

        default_client()
        return  # a worker inside the client's process (processes=False): the user's process
    except ValueError:
        pass
    from trueno.dask import buffers, plugin

    buffers.install()  # outputs reuse buffers freed by earlier tasks (no page faults)
    plugin.default_threads(worker)
    from trueno.trace import boot

    boot.LABEL.update(plugin.label(worker))


def _chunk(*args, op: str, trace: int = 0, kwargs=None):
    _traced(trace)
    with recorder.span(f"dask.chunk {op}", "dask"):
        return dispatch.run(OPS[op], args[0].size, args, kwargs or None)


def _partial(*blocks, op: str, pdtype, trace: int = 0, nargs: int = 1, block_info=None):
    _traced(trace)
    arrays, params = blocks[:nargs], blocks[nargs:]
    with recorder.span(f"dask.chunk {op}", "dask"):
        vals = REDUCTIONS[op][1](tuple(arrays) + tuple(params), block_info)
    out = np.empty((1,) * arrays[0].ndim, dtype=pdtype)
    out[(0,) * arrays[0].ndim] = vals
    return out


def _partial_at(*blocks, op: str, pdtype, block_info=None, trace: int = 0, nargs: int = 1):
    """:func:`_partial` for the reductions that need where the block lies (argmax/argmin's
    global indices): dask builds a ``block_info`` dict into each such task, which costs
    graph-building and scheduling time, so only these ask for it."""
    return _partial(*blocks, op=op, pdtype=pdtype, trace=trace, nargs=nargs, block_info=block_info)


def _red_chunk(p, axis=None, keepdims=True):
    return p


# the partial of a block with no elements: one that changes no combined value
_EMPTY = {"max": (-np.inf,), "min": (np.inf,)}


def _red_block(x, axis=None, keepdims=True, op=None, pdtype=None, trace=0):
    """``da.reduction``'s chunk step: one block's partial from trueno's kernel. A block with
    no elements gets the neutral partial without running a kernel: that is also how dask's
    meta call on a (0, ...) array is answered (arrays with no elements at all take the
    map_blocks path)."""
    if x.size == 0:
        out = np.empty((1,) * x.ndim, dtype=pdtype)
        out[(0,) * x.ndim] = _EMPTY.get(op, (0.0,))
        return out
    return _partial(x, op=op, pdtype=pdtype, trace=trace)


def _red_last(p, axis=None, keepdims=False, op=None, in_dtype=None, ddof=0, out_dtype=None):
    """``da.reduction``'s aggregate step: the combined partial's final value."""
    comb = _red_aggregate(p, axis, keepdims=False, name=op)
    return _red_final(comb, op=op, in_dtype=in_dtype, ddof=ddof, out_dtype=out_dtype)


def _red_combine(p, axis=None, keepdims=True, name=None):
    flat = np.asarray(p).reshape(-1)
    out = np.empty((1,) * p.ndim if keepdims else (), dtype=flat.dtype)
    out[...] = REDUCTIONS[name][2](flat)
    return out


def _red_aggregate(p, axis=None, keepdims=False, name=None):
    flat = np.asarray(p).reshape(-1)
    out = np.empty((1,) * p.ndim if keepdims else (), dtype=flat.dtype)
    out[...] = REDUCTIONS[name][2](flat)
    return out


def _red_final(comb, op=None, in_dtype=None, ddof=0, out_dtype=None):
    dt = np.dtype(in_dtype)
    comb = comb[()]
    if op in ("variance", "stddev"):
        v = comb["m2"] / (comb["n"] - ddof) if comb["n"] > ddof else np.nan
        value = dt.type(np.sqrt(v) if op == "stddev" else v)
    else:
        value = REDUCTIONS[op][3](comb, dt)
    return np.asarray(value, dtype=out_dtype)


def _mm_block(a, b, trace: int = 0):
    _traced(trace)
    with recorder.span("dask.chunk matmul", "dask"):
        out = dispatch.run(OPS["matmul"], a.size + b.size, (a, b))
    return out[:, None, :]


# ---- graph builders (client side) ----


def _meta(x, dtype, ndim=None):
    meta = x._meta
    ndim = x.ndim if ndim is None else ndim
    return meta.astype(dtype).reshape((0,) * ndim)


def run(spec: OpSpec, args: tuple, kwargs: dict):
    """The lazy dask result of ``spec`` on validated ``args`` (called by dispatch.run)."""
    name = spec.name
    trace = os.getpid() if capturing() else 0  # see _traced
    if spec.kind in ELEMENTWISE_KINDS:
        return _elementwise(name, args, kwargs, trace)
    if name in ROWWISE:
        return _rowwise(name, args, trace)
    if name in REDUCTIONS:
        return _reduction(name, args, trace)
    if name == "matvec":  # (m, n) @ (n,): the vector as one column
        a, v = args
        return _matmul(a, v[:, None], trace=trace)[:, 0]
    if name == "vecmat":  # (n,) @ (n, k): the vector as one row
        v, a = args
        return _matmul(v[None, :], a, trace=trace)[0]
    if name in MATRIX:
        return _matmul(*args, trace=trace)
    if name in GLOBAL:
        return _global(name, args[0], trace)
    if name in PAIRED:
        return _paired(name, args, trace)
    if name == "transpose":
        (x,) = args
        return da.blockwise(
            _chunk,
            "ji",
            x,
            "ij",
            op="transpose",
            trace=trace,
            dtype=x.dtype,
            meta=_meta(x, x.dtype),
        )
    raise UnsupportedError(f"{name}: not supported on dask arrays (nothing was computed)")


def _elementwise(name, args, kwargs, trace):
    arrays = [a for a in args if isinstance(a, (da.Array, np.ndarray)) and np.ndim(a) > 0]
    first = next(a for a in arrays if isinstance(a, da.Array))
    args = tuple(_like(a, first, name) for a in args)
    return da.map_blocks(
        _chunk,
        *args,
        op=name,
        trace=trace,
        kwargs=kwargs or None,
        dtype=first.dtype,
        meta=_meta(first, first.dtype),
    )


def _row_limit_bytes() -> int:
    """The most bytes one chunk may hold: dask's ``array.chunk-size`` setting."""
    import dask
    from dask.utils import parse_bytes

    return parse_bytes(dask.config.get("array.chunk-size"))


def _known_chunks(x, name, axes=None) -> None:
    axes = range(x.ndim) if axes is None else axes
    if any(np.isnan(c) for a in axes for c in x.chunks[a]):
        raise ShapeError(
            f"{name}: the dask array's chunk sizes are unknown {x.chunks}; call "
            "x.compute_chunk_sizes() first (nothing was computed)"
        )


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _caller_level() -> int:
    """The stacklevel of the first frame outside trueno (a warning points at the user's
    line, however many trueno frames lie between)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def _like(a, first, name):
    """An array operand on ``first``'s chunks (dask aligns nothing by itself in map_blocks
    for operands chunked differently); scalars and 0-d operands pass through."""
    if isinstance(a, np.ndarray) and a.ndim:
        return da.from_array(a, chunks=first.chunks)
    if isinstance(a, da.Array) and a.ndim and a.chunks != first.chunks:
        _known_chunks(a, name)
        return a.rechunk(first.chunks)
    return a


def _rowwise(name, args, trace):
    x, params = args[0], list(args[1:])
    _known_chunks(x, name, [x.ndim - 1])
    if x.numblocks[-1] > 1:
        row_bytes = x.shape[-1] * x.dtype.itemsize
        limit = _row_limit_bytes()
        if row_bytes > limit:  # one row would not fit a chunk: two passes over the blocks
            return _rowwise_two_pass(name, x, params, trace)
        warnings.warn(
            f"{name}: rechunking the last axis of a dask array with chunks "
            f"{x.chunks[-1]} to one chunk per row (moves data); chunk it by rows instead",
            DaskRechunkWarning,
            stacklevel=_caller_level(),
        )
        rows = {}
        if x.ndim == 2 and max(x.chunks[0], default=0) * row_bytes > limit:
            rows = {0: max(1, limit // row_bytes)}  # whole rows, each chunk within the limit
        x = x.rechunk({**rows, x.ndim - 1: -1})
    for i, p in enumerate(params):
        if isinstance(p, da.Array):
            params[i] = p.rechunk(-1)
        elif isinstance(p, np.ndarray):
            params[i] = da.from_array(p, chunks=-1)
    return da.map_blocks(
        _chunk, x, *params, op=name, trace=trace, dtype=x.dtype, meta=_meta(x, x.dtype)
    )


# ---- row-wise ops whose rows are wider than a chunk: per-row statistics, then the rows ----
_ROW_STATS = {
    "softmax": np.dtype([("m", "f8"), ("s", "f8")]),  # row max, sum of e^(x - max)
    "log_softmax": np.dtype([("m", "f8"), ("s", "f8")]),
    "layer_norm": np.dtype([("n", "f8"), ("mean", "f8"), ("m2", "f8")]),  # Chan et al.
    "rms_norm": np.dtype([("ss", "f8")]),  # sum of squares
}


def _row_stats_chunk(x, axis=None, keepdims=True, op=None, trace=0):
    """Pass 1, one block: each row's statistics over this block's columns, shape (rows, 1)."""
    _traced(trace)
    out = np.empty((x.shape[0], 1), dtype=_ROW_STATS[op])
    if x.shape[1] == 0:  # a block without columns (dask's meta call): neutral statistics
        for f in out.dtype.names:
            out[f] = -np.inf if f == "m" else 0.0
        return out
    with recorder.span(f"dask.chunk {op} rowstats", "dask"):
        x = x.astype(np.float64, copy=False)
        if op in ("softmax", "log_softmax"):
            m = x.max(axis=1)
            with np.errstate(invalid="ignore"):
                e = np.exp(x - m[:, None])
            out["m"][:, 0], out["s"][:, 0] = m, e.sum(axis=1)
        elif op == "layer_norm":
            mean = x.mean(axis=1)
            out["n"][:, 0], out["mean"][:, 0] = x.shape[1], mean
            out["m2"][:, 0] = ((x - mean[:, None]) ** 2).sum(axis=1)
        else:
            out["ss"][:, 0] = (x * x).sum(axis=1)
    return out


def _row_stats_merge(p, axis=None, keepdims=True, op=None):
    """Statistics of several blocks of the same rows (p: (rows, k)) merged to (rows, 1)."""
    out = np.empty((p.shape[0], 1), dtype=p.dtype)
    if op in ("softmax", "log_softmax"):
        m = p["m"].max(axis=1)
        with np.errstate(invalid="ignore"):  # a row of -inf only: its sums stay 0
            w = np.where(p["m"] == -np.inf, 0.0, np.exp(p["m"] - m[:, None]))
        out["m"][:, 0], out["s"][:, 0] = m, (p["s"] * w).sum(axis=1)
    elif op == "layer_norm":
        n = p["n"].sum(axis=1)
        mean = (p["n"] * p["mean"]).sum(axis=1) / np.where(n > 0, n, 1.0)
        out["n"][:, 0], out["mean"][:, 0] = n, mean
        out["m2"][:, 0] = (p["m2"] + p["n"] * (p["mean"] - mean[:, None]) ** 2).sum(axis=1)
    else:
        out["ss"][:, 0] = p["ss"].sum(axis=1)
    if not keepdims:
        out = out[:, 0]
    return out


def _row_apply(x, stats, *params, op=None, ncols=0, eps=0.0, trace=0):
    """Pass 2, one block: the op's values from the whole rows' statistics."""
    _traced(trace)
    with recorder.span(f"dask.chunk {op}", "dask"):
        x64 = x.astype(np.float64, copy=False)
        if op in ("softmax", "log_softmax"):
            lse = stats["m"] + np.log(stats["s"])
            z = x64 - lse[:, None]
            y = np.exp(z) if op == "softmax" else z
        elif op == "layer_norm":
            var = stats["m2"] / ncols
            y = (x64 - stats["mean"][:, None]) / np.sqrt(var + eps)[:, None]
            gamma, beta = params
            if gamma is not None:
                y = y * gamma
            if beta is not None:
                y = y + beta
        else:
            y = x64 / np.sqrt(stats["ss"] / ncols + eps)[:, None]
            if params[0] is not None:
                y = y * params[0]
        return y.astype(x.dtype, copy=False)


def _rowwise_two_pass(name, x, params, trace):
    """Rows wider than a chunk: pass 1 reduces each row over its blocks (a ``da.reduction``
    along the last axis), pass 2 maps every block with its rows' statistics. No data moves."""
    if type(x._meta).__module__.startswith("cupy"):
        raise UnsupportedError(
            f"{name}: rows of {x.shape[-1]} elements are wider than a chunk and the chunks "
            "are cupy arrays: the two-pass row reduction runs on host chunks only; rechunk "
            "the last axis to one chunk (x.rechunk({-1: -1})) first (nothing was computed)"
        )
    one_d = x.ndim == 1
    if one_d:
        x = x[None, :]
    if name in ("softmax", "log_softmax"):
        vectors, eps = [], 0.0
    else:
        vectors, eps = params[:-1], float(params[-1])
    vectors = [
        None
        if v is None
        else (v if isinstance(v, da.Array) else da.from_array(v)).rechunk((x.chunks[1],))
        for v in vectors
    ]
    sdtype = _ROW_STATS[name]
    stats = da.reduction(
        x,
        partial(_row_stats_chunk, op=name, trace=trace),
        partial(_row_stats_merge, op=name),
        combine=partial(_row_stats_merge, op=name),
        axis=1,
        keepdims=False,
        dtype=sdtype,
        concatenate=True,
        meta=np.empty((0,), dtype=sdtype),
    )
    given = [v for v in vectors if v is not None]
    slots = tuple(v is not None for v in vectors)
    pairs = [a for v in given for a in (v, "j")]
    out = da.blockwise(
        _with_params,
        "ij",
        x,
        "ij",
        stats,
        "i",
        *pairs,
        slots=slots,
        op=name,
        ncols=x.shape[1],
        eps=eps,
        trace=trace,
        dtype=x.dtype,
        meta=_meta(x, x.dtype),
    )
    return out[0] if one_d else out


def _with_params(x, stats, *given, slots=(), **kw):
    """:func:`_row_apply` with the row vectors that were None put back in their places."""
    it = iter(given)
    params = [next(it) if present else None for present in slots]
    return _row_apply(x, stats, *params, **kw)


# The most partials one combine task takes. Each level of dask's default reduction tree
# (``split_every`` 4: 2 x 2 blocks per task in 2-d, so 16 row blocks take 4 levels) costs a
# scheduler round trip and a transfer between workers, which on a small cluster is most of a
# reduction's time; trueno's partials are a few bytes each, so one task merges them all.
FLAT_MAX = 1024


def flat_split(numblocks: tuple) -> dict:
    """``da.reduction``'s ``split_every`` for trueno's tiny partials: one combine level over
    all blocks (a flat tree) up to :data:`FLAT_MAX` blocks, otherwise a tree whose tasks
    each take at most about ``FLAT_MAX`` partials."""
    split = [max(2, int(n)) for n in numblocks]
    wide = [i for i, n in enumerate(numblocks) if n > 1]
    if int(np.prod([numblocks[i] for i in wide])) > FLAT_MAX:
        per_axis = max(2, int(FLAT_MAX ** (1 / len(wide))))
        split = [min(s, per_axis) for s in split]
    return dict(enumerate(split))


def _reduction(name, args, trace):
    pdtype, _, _, _, out_dtype = REDUCTIONS[name]
    arrays = [a for a in args if isinstance(a, da.Array)]
    params = [a for a in args if not isinstance(a, da.Array)]
    x = arrays[0]
    if len(arrays) > 1 or name in ("argmax", "argmin"):  # aligned chunks, global indices
        for a in arrays:
            _known_chunks(a, name)
    if len(arrays) > 1:  # dot: both operands on the same chunks
        pairs = [v for a in arrays for v in (a, "abcdefgh"[: a.ndim])]
        arrays = list(da.core.unify_chunks(*pairs)[1])
        x = arrays[0]
    ddof = params[0] if name in ("variance", "stddev") and params else 0
    if name in ("variance", "stddev"):
        params = []
    out_dtype = out_dtype or x.dtype
    if len(arrays) == 1 and not params and pdtype is _SUM and x.size:
        # one da.reduction: the kernel's partial is its chunk step and the final value its
        # aggregate step (no extra map_blocks layers to build, tokenize and schedule)
        return da.reduction(
            x,
            partial(_red_block, op=name, pdtype=pdtype, trace=trace),
            partial(_red_last, op=name, in_dtype=x.dtype, ddof=ddof, out_dtype=out_dtype),
            combine=partial(_red_combine, name=name),
            split_every=flat_split(x.numblocks),
            dtype=out_dtype,
            concatenate=True,
            meta=np.empty((), dtype=out_dtype),
        )
    partials = da.map_blocks(
        _partial_at if name in ("argmax", "argmin") else _partial,
        *arrays,
        *params,
        op=name,
        pdtype=pdtype,
        trace=trace,
        nargs=len(arrays),
        chunks=tuple((1,) * n for n in x.numblocks),
        dtype=pdtype,
        meta=np.empty((0,) * x.ndim, dtype=pdtype),
    )
    # the final value is the aggregate step's (a task of its own would cost one more
    # scheduler round trip per compute); ``dtype`` is the partials' (dask casts the chunk
    # step's meta to it), ``meta`` the result's
    return da.reduction(
        partials,
        _red_chunk,
        partial(_red_last, op=name, in_dtype=x.dtype, ddof=ddof, out_dtype=out_dtype),
        combine=partial(_red_combine, name=name),
        split_every=flat_split(partials.numblocks),
        dtype=pdtype,
        concatenate=True,
        meta=np.empty((), dtype=out_dtype),
    )


def _matmul(a, b, trace=0):
    for m in (a, b):
        if isinstance(m, da.Array):
            _known_chunks(m, "matmul")
    if not isinstance(a, da.Array):
        a = da.from_array(a, chunks=(a.shape[0], b.chunks[0]))
    if not isinstance(b, da.Array):
        b = da.from_array(b, chunks=(a.chunks[1], b.shape[1]))
    dt = np.result_type(a.dtype, b.dtype)
    out = da.blockwise(
        _mm_block,
        "ikj",
        a,
        "ik",
        b,
        "kj",
        adjust_chunks={"k": 1},
        dtype=dt,
        trace=trace,
        meta=_meta(a, dt, 3),
    )
    return out.sum(axis=1, dtype=dt)


# ---- whole-array statistics, then every block mapped with them ----


def _global(name, x, trace):
    """normalize (by the L2 norm), zscore (mean, population stddev), minmax_normalize (min,
    max): the statistics as 0-d dask reductions of trueno's kernels, then each block mapped.
    A zero norm, a constant input raise DivisionByZeroError when computed, as on the host."""
    if name == "normalize":
        stats = (_reduction("norm_l2", (x,), trace),)
    elif name == "zscore":
        stats = (_moments(x, trace),)
    else:
        stats = (_reduction("min", (x,), trace), _reduction("max", (x,), trace))
    ind = tuple(range(x.ndim))
    pairs = [a for st in stats for a in (st, ())]
    return da.blockwise(
        _global_block, ind, x, ind, *pairs, op=name, trace=trace, dtype=x.dtype,
        meta=_meta(x, x.dtype),
    )  # fmt: skip


def _global_block(x, *stats, op=None, trace=0):
    _traced(trace)
    with recorder.span(f"dask.chunk {op}", "dask"):
        t = x.dtype.type
        if op == "normalize":
            n = t(stats[0][()])
            if n == 0:
                raise DivisionByZeroError(
                    "normalize: the vector has L2 norm 0; expected a non-zero vector"
                )
            return x / n
        if op == "zscore":
            mom = stats[0][()]
            s = t(np.sqrt(mom["m2"] / mom["n"]))
            if s == 0:
                raise DivisionByZeroError(
                    "zscore: standard deviation is 0 (constant input); expected values that vary"
                )
            return (x - t(mom["m"])) / s
        lo, hi = t(stats[0][()]), t(stats[1][()])
        if hi == lo:
            raise DivisionByZeroError(
                f"minmax_normalize: max == min == {lo} (constant input); expected values that vary"
            )
        return (x - lo) / (hi - lo)


def _moments(x, trace):
    """The (n, mean, m2) of all of ``x`` as a 0-d structured dask array."""
    pdtype = _MOM
    partials = da.map_blocks(
        _partial, x, op="mean", pdtype=pdtype, trace=trace, nargs=1,
        chunks=tuple((1,) * n for n in x.numblocks), dtype=pdtype,
        meta=np.empty((0,) * x.ndim, dtype=pdtype),
    )  # fmt: skip
    return da.reduction(
        partials, _red_chunk, partial(_red_aggregate, name="mean"),
        combine=partial(_red_combine, name="mean"), split_every=flat_split(partials.numblocks),
        dtype=pdtype, concatenate=True, meta=np.empty((), dtype=pdtype),
    )  # fmt: skip


# covariance / correlation: per block (n, mean a, mean b, m2 a, m2 b, co-moment) from
# trueno's mean, variance and covariance kernels; merged as Chan et al.
_COMOM = np.dtype(
    [("n", "f8"), ("ma", "f8"), ("mb", "f8"), ("m2a", "f8"), ("m2b", "f8"), ("c", "f8")]
)


def _comoments_block(a, b, op=None, trace=0):
    _traced(trace)
    out = np.empty((1,) * a.ndim, dtype=_COMOM)
    with recorder.span(f"dask.chunk {op}", "dask"):
        n = a.size
        if n == 0:
            out[(0,) * a.ndim] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
            return out
        m2a = float(_kernel("variance", (a, 0))) * n
        m2b = float(_kernel("variance", (b, 0))) * n
        # a block without spread: its one value is its exact mean (see _moments_block)
        ma = float(a.reshape(-1)[0]) if m2a == 0 else float(_kernel("mean", (a,)))
        mb = float(b.reshape(-1)[0]) if m2b == 0 else float(_kernel("mean", (b,)))
        c = float(_kernel("covariance", (a, b, 0))) * n
        row = [float(n), ma, mb, m2a, m2b, c]
    out[(0,) * a.ndim] = tuple(row)
    return out


def _comoments_merge(p, axis=None, keepdims=True):
    flat = np.asarray(p).reshape(-1)
    flat = flat[flat["n"] > 0] if (flat["n"] > 0).any() else flat[:1]
    n = flat["n"]
    total = n.sum()
    # shifted means: exact when every block has the same mean (a constant input)
    ma = flat["ma"][0] + (n * (flat["ma"] - flat["ma"][0])).sum() / total
    mb = flat["mb"][0] + (n * (flat["mb"] - flat["mb"][0])).sum() / total
    da_, db_ = flat["ma"] - ma, flat["mb"] - mb
    out = np.empty((1,) * p.ndim if keepdims else (), dtype=_COMOM)
    out[...] = (
        total, ma, mb,
        (flat["m2a"] + n * da_ * da_).sum(), (flat["m2b"] + n * db_ * db_).sum(),
        (flat["c"] + n * da_ * db_).sum(),
    )  # fmt: skip
    return out


def _paired_final(comb, op=None, in_dtype=None, ddof=0):
    t = np.dtype(in_dtype).type
    c = comb[()]
    if op == "covariance":
        return np.asarray(t(c["c"] / (c["n"] - ddof)))
    den = np.sqrt(c["m2a"]) * np.sqrt(c["m2b"])
    if den == 0:
        raise DivisionByZeroError("correlation: an input has zero variance; expected both to vary")
    return np.asarray(t(c["c"] / den))


def _paired_last(p, axis=None, keepdims=False, op=None, in_dtype=None, ddof=0):
    """``da.reduction``'s aggregate step for covariance/correlation: merged, then final."""
    return _paired_final(_comoments_merge(p, keepdims=False), op=op, in_dtype=in_dtype, ddof=ddof)


def _paired(name, args, trace):
    a, b = args[0], args[1]
    ddof = int(args[2]) if len(args) > 2 else 0
    a = a if isinstance(a, da.Array) else da.from_array(a, chunks=b.chunks)
    b = b if isinstance(b, da.Array) else da.from_array(b, chunks=a.chunks)
    for m in (a, b):
        _known_chunks(m, name)
    b = b.rechunk(a.chunks) if b.chunks != a.chunks else b
    partials = da.map_blocks(
        _comoments_block, a, b, op=name, trace=trace,
        chunks=tuple((1,) * n for n in a.numblocks), dtype=_COMOM,
        meta=np.empty((0,) * a.ndim, dtype=_COMOM),
    )  # fmt: skip
    return da.reduction(
        partials, _red_chunk, partial(_paired_last, op=name, in_dtype=a.dtype, ddof=ddof),
        combine=_comoments_merge, split_every=flat_split(partials.numblocks), dtype=_COMOM,
        concatenate=True, meta=np.empty((), dtype=a.dtype),  # dtype: as in _reduction
    )  # fmt: skip
