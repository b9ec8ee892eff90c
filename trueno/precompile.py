"""``trueno.warmup()``: compile every numba kernel up front, for float32 and float64, by
running each op once on small inputs with the numba backend forced (numba's on-disk cache
makes a second warmup, in a later process, take well under a second per kernel family)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

from trueno import backends, dispatch
from trueno.backends import Backend
from trueno.opspec import OPS

DTYPES = (np.float32, np.float64)


def _calls(dtype) -> list[tuple[str, Callable[[], object]]]:
    import trueno

    x = np.linspace(-2, 2, 9, dtype=dtype)
    y = np.linspace(1, 3, 9, dtype=dtype)
    m = np.arange(12, dtype=dtype).reshape(3, 4) / 7
    by_args = {
        "x": lambda f: f(x),
        "xy": lambda f: (f(x, y), f(x, 2.0)),
        "xs": lambda f: f(x, 2.0),
        "xss": lambda f: f(x, -1.0, 1.0),
        "xys": lambda f: f(x, y, 0.5),
        "xyz": lambda f: f(x, y, x),
        "red": lambda f: f(x),
        "redxy": lambda f: f(x, y),
        "vec": lambda f: f(x),
        "row": lambda f: (f(x), f(m)),
    }
    calls = []
    for name, spec in OPS.items():
        call = by_args.get(spec.args)
        if call is None:
            continue
        fn = getattr(trueno, name)
        calls.append((name, lambda fn=fn, call=call: call(fn)))
    calls.append(("gelu(erf)", lambda: trueno.gelu(x, approximate="none")))
    calls.append(("layer_norm(affine)", lambda: trueno.layer_norm(m, m[0], m[0])))
    calls.append(("rms_norm(weight)", lambda: trueno.rms_norm(m, m[0])))
    calls.append(("convolve2d", lambda: trueno.convolve2d(m, m[:2, :2])))
    return calls


def warmup(progress: bool | None = None) -> int:
    """Compile every numba kernel for float32 and float64; returns the number of op calls
    made. ``progress=None`` shows a bar on stderr only when stderr is a terminal. Without
    numba this is a no-op returning 0."""
    if not backends.is_available(Backend.NUMBA):
        return 0
    if progress is None:
        progress = sys.stderr.isatty()
    todo = [(f"{name} {np.dtype(dt).name}", fn) for dt in DTYPES for name, fn in _calls(dt)]
    todo += [
        (f"{family} internals {np.dtype(dt).name}", warm)
        for dt in DTYPES
        for family, warm in _family_hooks(dt)
    ]
    with dispatch.use_backend(Backend.NUMBA), np.errstate(all="ignore"):
        for i, (label, fn) in enumerate(todo, 1):
            if progress:
                _bar(i, len(todo), label)
            fn()
    if progress:
        sys.stderr.write("\n")
        sys.stderr.flush()
    return len(todo)


def _family_hooks(dtype) -> list:
    """Kernel families' own ``warm(dtype)`` hooks (entry points no small op call reaches)."""
    import importlib

    from trueno.backends.numba_kernels import FAMILIES

    hooks = []
    for family in FAMILIES:
        module = importlib.import_module(f"trueno.backends.numba_kernels.{family}")
        warm = getattr(module, "warm", None)
        if warm is not None:
            hooks.append((family, lambda warm=warm: warm(dtype)))
    return hooks


def _bar(i: int, n: int, label: str, width: int = 30) -> None:
    done = width * i // n
    sys.stderr.write(f"\rtrueno warmup [{'#' * done}{'.' * (width - done)}] {i}/{n} {label:<28.28}")
    sys.stderr.flush()
