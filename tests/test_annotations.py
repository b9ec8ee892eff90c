"""Public functions of the type-checked layers are annotated (mypy then checks their callers).

gguf, quant.api, ops, config and floats are held to it by mypy itself (disallow_untyped_defs
in pyproject.toml, private helpers too); llm, whose numba kernels keep unannotated private
helpers and typing callbacks, is held here: every module-level function and every method of a
module-level class whose name has no leading underscore names each parameter's type and its
return type (``__init__`` its parameters).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "trueno"
CHECKED = ("llm",)


def _unannotated(source: str):
    """(line, name) of each public function or method in ``source`` missing an annotation."""
    tree = ast.parse(source)
    defs = [(n, "") for n in tree.body]
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            defs += [(n, f"{node.name}.") for n in node.body]
    for node, owner in defs:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        public = not node.name.startswith("_") or node.name == "__init__"
        if not public:
            continue
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        if owner and params and params[0].arg in ("self", "cls"):
            params = params[1:]
        params += [a for a in (args.vararg, args.kwarg) if a is not None]
        missing = [a.arg for a in params if a.annotation is None]
        if node.returns is None and node.name != "__init__":
            missing.append("return")
        if missing:
            yield node.lineno, f"{owner}{node.name} ({', '.join(missing)})"


def test_public_functions_are_annotated():
    found = [
        f"trueno/{path.relative_to(ROOT).as_posix()}:{line} {what}"
        for layer in CHECKED
        for path in sorted((ROOT / layer).rglob("*.py"))
        for line, what in _unannotated(path.read_text())
    ]
    assert not found, "public functions without annotations:\n" + "\n".join(found)


def test_the_check_sees_a_missing_annotation():
    src = (
        "def f(a: int) -> int: ...\ndef g(a, *rest: int) -> None: ...\ndef _h(a): ...\n"
        "class C:\n    def __init__(self, x) -> None: ...\n    def m(self, y: int): ...\n"
        "    def _p(self, z): ...\nclass _D:\n    def m(self, y): ...\n"
    )
    assert list(_unannotated(src)) == [(2, "g (a)"), (5, "C.__init__ (x)"), (6, "C.m (return)")]
