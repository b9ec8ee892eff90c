"""A numpy emulation of the few cupy names trueno's GPU glue uses, to run that glue without a GPU.

It checks what a GPU run would need and nvcc alone cannot see: every ``RawKernel`` launch's
argument list against the kernel's PTX parameters (count, pointer vs int32 vs float32, each
pointer a C-contiguous array of the expected dtype: a RawKernel gets a bare data pointer, so a
strided view would be read wrongly on a GPU), and the launch's grid against the data. Each
kernel's effect is then computed by a numpy formula of its documented contract, so the glue's
buffers and shapes can be checked end to end against the CPU model.

Stream capture (CUDA graphs) follows CUDA's rules: between ``begin_capture`` and
``end_capture`` kernels, element-wise ops and in-place array ops are recorded, not run, and
``Graph.launch`` replays them on the same buffers. Anything that cannot be captured raises: an
allocation (a new array), a host<->device copy, a synchronization. A step that bakes a
per-token value into a launch therefore replays stale values and gives wrong logits.

The CUDA code itself is not run here: tests/gpu/test_gpu_*.py check it on a real device, and
test_quant_kernels.py runs its block decoding on the host.
"""

from __future__ import annotations

import types

import numpy as np

from trueno.backends.cuda import elementwise

_capture: list | None = None  # the recorded operations while a stream captures
_streams: list = []  # the `with stream:` stack (the current stream is its top)


class CaptureError(RuntimeError):
    """An operation CUDA does not allow while a stream is capturing."""


def _no_capture(what: str) -> None:
    if _capture is not None:
        raise CaptureError(f"emulated cupy: {what} during stream capture")


def _run_or_record(op) -> None:
    if _capture is not None:
        _capture.append(op)
    else:
        op()


class ndarray(np.ndarray):  # noqa: N801 (cupy's name)
    """A host array posing as a device one: ``.get()``, ``.set()``, ``.data.ptr``; ufuncs,
    in-place ops and item assignment follow stream capture (recorded, or refused when they
    would allocate)."""

    __module__ = "cupy._emulated"  # what trueno.device.is_device_array looks at

    def get(self):
        _no_capture("a device-to-host copy")
        return np.array(self, copy=True).view(np.ndarray)

    def set(self, arr):
        _no_capture("a host-to-device copy")
        arr = np.asarray(arr)
        assert arr.shape == self.shape and arr.dtype == self.dtype, (arr.shape, self.shape)
        self[...] = arr

    def copy(self, order="C"):
        _no_capture("an allocation (copy)")
        return _dev(np.array(_plain(self), order=order, copy=True))

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and not isinstance(value, ndarray):
            _no_capture("a host-to-device copy")
        target, value = _plain(self), _plain(value)
        _run_or_record(lambda: target.__setitem__(key, value))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        args = tuple(_plain(a) for a in inputs)
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
            _run_or_record(lambda: getattr(ufunc, method)(*args, **kwargs))
            return out[0] if len(out) == 1 else out
        _no_capture(f"an allocation ({ufunc.__name__} without out=)")
        res = getattr(ufunc, method)(*args, **kwargs)
        return tuple(_dev(r) for r in res) if isinstance(res, tuple) else _dev(res)


def _dev(a):
    """A result as cupy gives it: an array, 0-d for a reduction (never a numpy scalar)."""
    if isinstance(a, np.generic):
        a = np.asarray(a)
    return a.view(ndarray) if isinstance(a, np.ndarray) else a


def _reduction(name: str):
    def method(self, *args, **kwargs):
        _no_capture(f"an allocation ({name})")
        return _dev(getattr(np.ndarray, name)(_plain(self), *args, **kwargs))

    return method


for _name in ("sum", "max", "min", "argmax", "argmin", "mean"):
    setattr(ndarray, _name, _reduction(_name))


def _allocating(fn):
    def call(*args, **kwargs):
        _no_capture(f"an allocation ({fn.__name__})")
        return _dev(fn(*(_plain(a) for a in args), **kwargs))

    return call


def _plain(a):
    return a.view(np.ndarray) if isinstance(a, ndarray) else a


class Launches:
    """Every emulated kernel launch, by name (what a test asserts on), and graph events."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


class Graph:
    def __init__(self, ops: list, launches: Launches) -> None:
        self.ops, self.launches = ops, launches

    def launch(self, stream=None) -> None:
        _no_capture("a graph launch")
        self.launches.add("graph_launch")
        for op in self.ops:
            op()


def _stream_class(launches: Launches):
    class Stream:
        def __init__(self, non_blocking: bool = False, null: bool = False) -> None:
            self.is_null = null

        def __enter__(self):
            _streams.append(self)
            return self

        def __exit__(self, *exc) -> None:
            _streams.pop()

        def synchronize(self) -> None:
            _no_capture("a stream synchronization")

        def begin_capture(self, mode=None) -> None:
            global _capture
            if self.is_null:
                raise CaptureError("emulated cupy: the null stream cannot capture")
            if _capture is not None:
                raise CaptureError("emulated cupy: a capture is already open")
            _capture = []

        def end_capture(self) -> Graph:
            global _capture
            ops, _capture = _capture, None
            if ops is None:
                raise CaptureError("emulated cupy: end_capture without begin_capture")
            launches.add("graph_capture")
            return Graph(ops, launches)

    Stream.null = Stream(null=True)
    return Stream


def build(abi: dict[str, tuple[str, ...]]) -> tuple[types.ModuleType, Launches]:
    """A module to put in ``sys.modules['cupy']``; ``abi``: kernel -> PTX parameter types
    (from :func:`trueno.backends.cuda.nvcc.entry_params`)."""
    global _capture
    _capture = None
    _streams.clear()
    cp = types.ModuleType("cupy")
    cp.__version__ = "emulated"
    cp.ndarray = ndarray
    for name in ("float16", "float32", "float64", "int32", "int64", "uint8", "dtype"):
        setattr(cp, name, getattr(np, name))
    for name in ("empty", "zeros", "ones", "empty_like", "zeros_like", "arange", "concatenate"):
        setattr(cp, name, _allocating(getattr(np, name)))
    for name in ("where", "dot"):
        setattr(cp, name, _allocating(getattr(np, name)))
    for name in ("matmul", "exp", "abs", "sqrt", "tanh", "log"):  # ufuncs: out= is recorded
        setattr(cp, name, getattr(np, name))

    def asarray(a, dtype=None):
        if isinstance(a, ndarray) and (dtype is None or a.dtype == dtype):
            return a
        _no_capture("an allocation (asarray)")
        return _dev(np.array(_plain(a), dtype=dtype, copy=True))

    def ascontiguousarray(a, dtype=None):
        out = np.ascontiguousarray(_plain(a), dtype=dtype)
        if not (isinstance(a, np.ndarray) and np.shares_memory(out, a)):
            _no_capture("an allocation (ascontiguousarray)")
        return _dev(out)

    def numpy_fallback(name: str):  # the rest of the array API (ufuncs, moveaxis ...)
        fn = getattr(np, name, None)
        if fn is None or name.startswith("_"):
            raise AttributeError(f"emulated cupy has no {name!r}")
        return fn if isinstance(fn, np.ufunc) else _allocating(fn)

    cp.__getattr__ = numpy_fallback
    cp.asarray = asarray
    cp.array = asarray
    cp.ascontiguousarray = ascontiguousarray
    launches = Launches()
    stream_class = _stream_class(launches)
    cp.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
        Stream=stream_class,
        get_current_stream=lambda: _streams[-1] if _streams else stream_class.null,
    )

    class RawModule:
        def __init__(self, code: str, options=()) -> None:
            self.code = code

        def get_function(self, kernel: str):
            assert kernel in abi, f"no kernel {kernel!r} in the compiled sources"
            return _Kernel(kernel, abi[kernel], launches)

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name, preamble="") -> None:
            self.op = name.removeprefix("trueno_")
            self.n_in = len(in_params.split(","))

        def __call__(self, *args):
            ins = tuple(_plain(a) for a in args[: self.n_in])
            outs = args[self.n_in :]
            launches.add(self.op)
            if not outs:
                _no_capture(f"an allocation ({self.op} without an output)")
                with np.errstate(all="ignore"):
                    return _dev(elementwise.evaluate(self.op, np, *ins))
            target = _plain(outs[0])

            def run():
                with np.errstate(all="ignore"):
                    target[...] = elementwise.evaluate(self.op, np, *ins)

            _run_or_record(run)
            return outs[0]

    class ReductionKernel:
        def __init__(self, in_params, out_params, map_expr, reduce_expr, post, identity, name):
            self.name = name
            self.fn = REDUCTIONS[name]

        def __call__(self, x):
            _no_capture(f"an allocation ({self.name})")
            launches.add(self.name)
            return _dev(np.asarray(self.fn(_plain(x)), dtype=x.dtype))

    cp.RawModule = RawModule
    cp.ReductionKernel = ReductionKernel
    cp.ElementwiseKernel = ElementwiseKernel
    return cp, launches


_SCALAR = {"u32": np.int32, "s32": np.int32, "f32": np.float32, "f64": np.float64}


class _Kernel:
    def __init__(self, name: str, params: tuple[str, ...], launches: Launches) -> None:
        self.name, self.params, self.launches = name, params, launches

    def __call__(self, grid, block, args):
        assert len(args) == len(self.params), f"{self.name}: {len(args)} args for {self.params}"
        for i, (a, p) in enumerate(zip(args, self.params, strict=True)):
            if p == "u64":
                assert isinstance(a, ndarray), f"{self.name} arg {i}: a device array, got {a!r}"
                assert a.flags.c_contiguous, f"{self.name} arg {i}: a strided view"
            else:
                assert type(a) is _SCALAR[p], f"{self.name} arg {i}: {_SCALAR[p]} for .{p}"
        assert all(b % 32 == 0 for b in block[:1]) and np.prod(block) <= 1024, block
        self.launches.add(self.name)
        if self.name in LAUNCH_CHECKS:
            LAUNCH_CHECKS[self.name](grid, block, args)
        emulate = EMULATE[
            self.name.rsplit("_", 1)[0] if self.name[-4:] in ("_f32", "_f64") else self.name
        ]
        plain = tuple(_plain(a) for a in args)
        _run_or_record(lambda: emulate(grid, *plain))


def _flat(a):
    return a.reshape(-1)


def _rms_norm(grid, x, y, n, w, has_w, eps):
    rows, n = grid[0], int(n)
    xr = _flat(x)[: rows * n].reshape(rows, n).astype(np.float64)
    out = xr / np.sqrt((xr * xr).mean(axis=1, keepdims=True) + float(eps))
    if has_w:
        out = out * _flat(w)[:n]
    _flat(y)[: rows * n] = out.reshape(-1)


def _softmax(grid, x, y, n, log=False):
    rows, n = grid[0], int(n)
    xr = _flat(x)[: rows * n].reshape(rows, n).astype(np.float64)
    z = xr - xr.max(axis=1, keepdims=True)
    out = z - np.log(np.exp(z).sum(axis=1, keepdims=True)) if log else np.exp(z)
    if not log:
        out /= out.sum(axis=1, keepdims=True)
    _flat(y)[: rows * n] = out.reshape(-1)


def _layer_norm(grid, x, y, n, w, b, has_w, has_b, eps):
    rows, n = grid[0], int(n)
    xr = _flat(x)[: rows * n].reshape(rows, n).astype(np.float64)
    c = xr - xr.mean(axis=1, keepdims=True)
    out = c / np.sqrt((c * c).mean(axis=1, keepdims=True) + float(eps))
    if has_w:
        out = out * _flat(w)[:n]
    if has_b:
        out = out + _flat(b)[:n]
    _flat(y)[: rows * n] = out.reshape(-1)


def _rope(grid, x, positions, n_heads, head_dim, cos, sin, half, neox):
    n_tokens, hd, half = grid[0], int(head_dim), int(half)
    assert grid[1] == n_heads and positions.dtype == np.int32
    v = _flat(x)[: n_tokens * n_heads * hd].reshape(n_tokens, n_heads, hd)
    c = _flat(cos).reshape(-1, half)[positions[:n_tokens]][:, None, :]
    s = _flat(sin).reshape(-1, half)[positions[:n_tokens]][:, None, :]
    ia = np.arange(half) if neox else 2 * np.arange(half)
    ib = ia + half if neox else ia + 1
    a, b = v[..., ia].copy(), v[..., ib].copy()
    v[..., ia] = a * c - b * s
    v[..., ib] = a * s + b * c


def _kv_store(grid, k_cache, v_cache, k, v, positions, ctx, head_dim):
    n_kv, ctx, hd = grid[0], int(ctx), int(head_dim)
    assert positions.dtype == np.int32
    pos = int(positions[0])
    _flat(k_cache).reshape(-1, ctx, hd)[:n_kv, pos] = _flat(k)[: n_kv * hd].reshape(n_kv, hd)
    _flat(v_cache).reshape(-1, ctx, hd)[:n_kv, pos] = _flat(v)[: n_kv * hd].reshape(n_kv, hd)


def _attend_one(grid, out, q, k, v, positions, window, scale, softcap, groups, ctx, head_dim,
                part):  # fmt: skip
    """attend_one_f32's contract: grid (n_kv_heads, n_split); block (kv, s) over slice s of
    the positions (cut from positions[0] on the device, as the kernel cuts them); one slice
    writes ``out``, several write their running state (max, sum, acc) into ``part`` for
    attend_merge_f32, a slice left empty with sum 0."""
    assert positions.dtype == np.int32
    n_kv, n_split = grid[0], grid[1]
    groups, ctx, hd, pos = int(groups), int(ctx), int(head_dim), int(positions[0])
    assert 1 <= groups <= 32, "ATTN_MAX_GROUPS"
    if n_split > 1:
        assert part.size >= n_kv * n_split * groups * (hd + 2), "states overrun the scratch"
    qh = _flat(q)[: n_kv * groups * hd].reshape(n_kv, groups, hd).astype(np.float64)
    kc = _flat(k).reshape(-1, ctx, hd)
    vc = _flat(v).reshape(-1, ctx, hd)
    first = max(0, pos - int(window) + 1) if window > 0 else 0
    step = -(-(pos + 1 - first) // n_split)
    o = _flat(out)[: n_kv * groups * hd].reshape(n_kv, groups, hd)
    states = _flat(part)[: n_kv * n_split * groups * (hd + 2)]
    states = states.reshape(n_kv, n_split, groups, -1) if n_split > 1 else None
    for kv in range(n_kv):
        for sl in range(n_split):
            lo = first + sl * step
            hi = min(pos + 1, lo + step)
            if lo >= hi:
                assert n_split > 1
                states[kv, sl, :, :2] = (-np.inf, 0.0)
                states[kv, sl, :, 2:] = 0.0
                continue
            s = qh[kv] @ kc[kv, lo:hi].T * float(scale)  # (groups, hi - lo)
            if softcap > 0:
                s = float(softcap) * np.tanh(s / float(softcap))
            m = s.max(axis=1, keepdims=True)
            p = np.exp(s - m)
            acc = p @ vc[kv, lo:hi]
            if n_split == 1:
                o[kv] = acc / p.sum(axis=1, keepdims=True)
            else:
                states[kv, sl, :, 0] = m[:, 0]
                states[kv, sl, :, 1] = p.sum(axis=1)
                states[kv, sl, :, 2:] = acc


def _attend_merge(grid, out, part, groups, n_split, head_dim):
    """attend_merge_f32: grid n_heads; the slices' states (sum > 0) rescaled to one max."""
    n_heads, groups, n_split, hd = grid[0], int(groups), int(n_split), int(head_dim)
    states = _flat(part)[: n_heads * n_split * (hd + 2)].reshape(-1, n_split, groups, hd + 2)
    states = states.transpose(0, 2, 1, 3).reshape(n_heads, n_split, hd + 2).astype(np.float64)
    o = _flat(out)[: n_heads * hd].reshape(n_heads, hd)
    for h in range(n_heads):
        live = states[h][states[h, :, 1] > 0]
        w = np.exp(live[:, 0] - live[:, 0].max())
        o[h] = (w @ live[:, 2:]) / (w @ live[:, 1])


def _attend_launch(grid, block, args):
    """attend_one_f32 keeps at most ATTN_MAX_PAIRS (8) (head, value) accumulators a thread."""
    groups, head_dim = int(args[8]), int(args[10])
    assert groups * head_dim <= 8 * block[0], (groups, head_dim, block)


LAUNCH_CHECKS = {"attend_one_f32": _attend_launch}


def _dequantize(kernel: str, w, rows: int, cols: int) -> np.ndarray:
    from gguf import GGMLQuantizationType, quants

    t = GGMLQuantizationType[kernel.split("_", 1)[1].upper()]
    return quants.dequantize(_flat(w).reshape(rows, -1), t).astype(np.float64)


def _quant(kernel: str):
    def matvec(grid, w, x, y, rows, cols):
        rows, cols = int(rows), int(cols)
        assert grid[0] * 4 >= rows, "one warp per row, 4 rows per block"
        _flat(y)[:rows] = _dequantize(kernel, w, rows, cols) @ _flat(x)[:cols]

    def matmul(grid, w, x, y, rows, cols, n):
        rows, cols, n = int(rows), int(cols), int(n)
        assert grid[1] * 8 >= n, "column groups of 8 vectors"
        xs = _flat(x)[: n * cols].reshape(n, cols)
        _flat(y)[: n * rows] = (xs @ _dequantize(kernel, w, rows, cols).T).reshape(-1)

    return matmul if kernel.startswith("matmul") else matvec


REDUCTIONS = {
    "trueno_sum_sq": lambda x: np.sum(x * x),
    "trueno_norm_l2": lambda x: np.sqrt(np.sum(x * x)),
    "trueno_norm_l1": lambda x: np.sum(np.abs(x)),
}

EMULATE = {
    "rms_norm": _rms_norm,
    "softmax": _softmax,
    "log_softmax": lambda grid, x, y, n: _softmax(grid, x, y, n, log=True),
    "layer_norm": _layer_norm,
    "rope": _rope,
    "attend_one": _attend_one,
    "attend_merge": _attend_merge,
    "kv_store": _kv_store,
}


def register_quant(names) -> None:
    for name in names:
        EMULATE[name] = _quant(name)
