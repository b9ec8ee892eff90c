"""Text of ``trueno gguf info FILE``: header, metadata (long arrays and strings summarised),
tensor table and bytes per GGML type. Returns a string; the CLI prints it."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from trueno.gguf.constants import GGUFValueType
from trueno.gguf.reader import GGUFFile, GGUFStringArray, load

__all__ = ["format_info", "format_value", "format_type"]


def format_type(vtype: Any) -> str:
    """``UINT32``, ``ARRAY[STRING]``, ``ARRAY[ARRAY[INT32]]``."""
    if isinstance(vtype, tuple):
        inner = format_type(vtype[1:] if len(vtype) > 2 else vtype[1]) if len(vtype) > 1 else "?"
        return f"ARRAY[{inner}]"
    return GGUFValueType(vtype).name


def _short(text: str, max_chars: int) -> str:
    r = repr(text)
    if len(r) <= max_chars:
        return r
    return f"{r[: max_chars - 3]}...' ({len(text)} chars)"


def format_value(value: Any, max_items: int = 6, max_chars: int = 60) -> str:
    """One metadata value on one line: arrays longer than ``max_items`` show head and tail."""
    if isinstance(value, str):
        return _short(value, max_chars)
    if isinstance(value, (GGUFStringArray, np.ndarray, list)):
        n = len(value)
        if n <= max_items:
            idx: list[int | None] = list(range(n))
        else:
            half = max(1, max_items // 2)
            idx = [*range(half), None, *range(n - half, n)]
        parts = ["..." if i is None else format_value(_item(value, i), max_items, 24) for i in idx]
        body = f"[{', '.join(parts)}]"
        return f"{n} items {body}" if n > max_items else body
    if isinstance(value, float):
        return f"{value:.7g}"
    return str(value)


def _item(value: Any, i: int) -> Any:
    v = value[i]
    return v.item() if isinstance(v, np.generic) else v


def _fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _table(rows: list[tuple], right: set[int]) -> list[str]:
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [
            str(v).rjust(w) if c in right else str(v).ljust(w)
            for c, (v, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def format_info(
    source: GGUFFile | str | os.PathLike, max_items: int = 6, max_chars: int = 60
) -> str:
    """The info text of a GGUF file (a path, or an already opened :class:`GGUFFile`)."""
    if isinstance(source, GGUFFile):
        return _format(source, max_items, max_chars)
    with load(source) as f:
        return _format(f, max_items, max_chars)


def _format(f: GGUFFile, max_items: int, max_chars: int) -> str:
    out = [
        f"file: {f.path}",
        f"GGUF v{f.version}, {f.size} bytes, alignment {f.alignment}, "
        f"data at offset {f.data_offset}",
        "",
        f"metadata ({len(f.metadata)} keys):",
    ]
    if f.metadata:
        out += _table(
            [
                (k, format_type(f.metadata_types[k]), format_value(v, max_items, max_chars))
                for k, v in f.metadata.items()
            ],
            set(),
        )
    out += ["", f"tensors ({len(f.tensors)}):"]
    totals: dict[str, list[int]] = {}
    rows: list[tuple]  # table rows: a header of names, then cells of any type
    if f.tensors:
        rows = [("name", "type", "shape", "elements", "bytes", "offset")]
        for t in f.tensors.values():
            rows.append(
                (
                    t.name,
                    t.ggml_type.name,
                    "x".join(map(str, t.shape)) or "scalar",
                    t.n_elements,
                    t.nbytes,
                    t.offset,
                )
            )
            acc = totals.setdefault(t.ggml_type.name, [0, 0, 0])
            acc[0] += 1
            acc[1] += t.n_elements
            acc[2] += t.nbytes
        out += _table(rows, {3, 4, 5})
    total = sum(a[2] for a in totals.values())
    out += ["", "bytes by type:"]
    rows = [("type", "tensors", "elements", "bytes", "share")]
    for name, (count, n_el, nbytes) in sorted(totals.items(), key=lambda kv: -kv[1][2]):
        rows.append((name, count, n_el, _fmt_bytes(nbytes), f"{100 * nbytes / total:.1f}%"))
    rows.append(
        (
            "total",
            len(f.tensors),
            sum(a[1] for a in totals.values()),
            _fmt_bytes(total),
            "100.0%" if total else "-",
        )
    )
    out += _table(rows, {1, 2, 3, 4})
    return "\n".join(out) + "\n"
