"""Imports flow one way: design.md's layers, checked over the AST of every module.

Every ``import`` counts, the ones inside functions too (a lazy import hides an edge from a
reader, not from this test), and so does ``importlib.import_module`` of a module named in the
source (a string, or an f-string's fixed prefix). A module may import its own layer and the
layers below it; a wrong-way import fails with its file, line and name. ARCHITECTURE.md gives
the reason for each arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "trueno"

# bottom to top; a layer may import only its own rank and below
LAYERS = (
    ("errors", "config", "cpu", "floats"),
    ("trace",),
    ("backends",),
    ("dispatch", "opspec", "device"),  # device: the public face of backends/device.py
    ("ops", "vector"),
    ("gguf",),
    ("quant",),
    ("dask",),
    ("llm",),
    ("serve",),
    ("cli", "__main__", "", "precompile"),  # "": the facade, trueno/__init__.py (warmup: all ops)
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

# (file, module): the lookups by name that point up, each a plugin found only when its data
# arrives: a dask array reaching an op or dispatch finds trueno.dask by name, so ``import
# trueno`` never loads dask (ARCHITECTURE.md). A listed one that is gone fails too.
PLUGIN_LOOKUPS = {
    ("dispatch.py", "trueno.dask.array"),
    ("ops/_validate.py", "trueno.dask.array"),
}


def _layer(module: str) -> str:
    """'trueno.llm.model' -> 'llm'; 'trueno' -> '' (the facade)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_of(path: Path) -> str:
    parts = ["trueno", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _looked_up(node: ast.Call) -> str | None:
    """The module an ``importlib.import_module(...)`` call names in the source, if any: a
    string, or the fixed prefix of an f-string up to its last dot ("trueno.quant.{m}")."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rpartition(".")[0] or None
    return None


def _parse(source: str) -> ast.Module:
    """``ast.parse``, once more after a spurious "AST constructor recursion depth mismatch"
    SystemError: a CPython 3.11 bug (python/cpython#106905 and reports like it, mostly from
    threaded programs). Seen once here, in a fresh-clone CI run (2026-12-07), in a test
    process where earlier tests had left threads running; this file parses every module. A
    second failure is raised."""
    try:
        return ast.parse(source)
    except SystemError as exc:
        if "recursion depth mismatch" not in str(exc):
            raise
        return ast.parse(source)


def _imports_in(source: str, package: str):
    """(line, imported module) for every import in ``source``, a module of ``package``."""
    for node in ast.walk(_parse(source)):
        if isinstance(node, ast.Call) and (looked_up := _looked_up(node)):
            yield node.lineno, looked_up
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "trueno":  # from trueno import trace: the submodules named
                for alias in node.names:
                    yield node.lineno, f"trueno.{alias.name}"
            else:
                yield node.lineno, target


def _edges_of(path: Path, source: str):
    """(file, line, its layer, imported layer, imported module) for each trueno import."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    rel = path.relative_to(ROOT).as_posix()
    for line, target in _imports_in(source, package):
        if target == "trueno" or target.startswith("trueno."):
            yield rel, line, _layer(module), _layer(target), target


def _edges():
    for path in sorted(ROOT.rglob("*.py")):
        yield from _edges_of(path, path.read_text())


def test_every_module_has_a_layer():
    unknown = {(rel, here) for rel, _, here, _, _ in _edges() if here not in RANK}
    assert not unknown, f"modules outside design.md's layers (add them to LAYERS): {unknown}"


def test_imports_flow_downward():
    upward = [e for e in _edges() if e[3] in RANK and RANK[e[3]] > RANK[e[2]]]
    wrong = [
        f"trueno/{rel}:{line} imports {name} (layer {there!r} above {here!r})"
        for rel, line, here, there, name in upward
        if (rel, name) not in PLUGIN_LOOKUPS
    ]
    assert not wrong, "wrong-way imports:\n" + "\n".join(wrong)
    gone = PLUGIN_LOOKUPS - {(rel, name) for rel, _, _, _, name in upward}
    assert not gone, f"no longer looked up, drop from PLUGIN_LOOKUPS: {gone}"


def test_a_wrong_way_import_is_seen_with_its_file_and_line():
    """The check above can fail: a quant module importing llm inside a function is seen."""
    src = "import numpy\ndef f():\n    from trueno.llm import model\n"
    edges = list(_edges_of(ROOT / "quant" / "probe.py", src))
    assert edges == [("quant/probe.py", 3, "quant", "llm", "trueno.llm")]
    assert RANK["llm"] > RANK["quant"]


def test_the_walker_sees_function_level_and_relative_imports():
    src = "import os\ndef f():\n    from trueno.llm import model\n    from ..quant import fused\n"
    found = [target for _, target in _imports_in(src, "trueno.backends.cuda")]
    assert found == ["os", "trueno.llm", "trueno.backends.quant"]
    src = "from trueno import trace, dispatch\n"
    assert [t for _, t in _imports_in(src, "trueno.ops")] == ["trueno.trace", "trueno.dispatch"]
    src = (
        "import importlib\ndef f(m):\n    importlib.import_module('trueno.dask.array')\n"
        "    import_module(f'trueno.quant.{m}')\n    importlib.import_module(m)\n"
    )
    found = [(line, t) for line, t in _imports_in(src, "trueno.ops") if t.startswith("trueno")]
    assert found == [(3, "trueno.dask.array"), (4, "trueno.quant")]
