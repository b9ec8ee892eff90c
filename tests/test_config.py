"""Every TRUENO_* environment variable is read in trueno/config.py and nowhere else, checked over
the AST of every module (reads inside functions too); config's per-call readers name a bad
value with a ConfigError."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from trueno import config
from trueno.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent / "trueno"

# files that still read a TRUENO_* variable themselves, each waiting for its edit; a listed
# file that no longer does fails the test too, so the list only shrinks
PENDING: set[str] = set()

_READERS = {"getenv", "read_flag", "_read_number"}


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _reads(source: str):
    """(line, variable) for every read of a TRUENO_* environment variable in ``source``: a
    literal name, or a module-level constant holding one."""
    tree = ast.parse(source)
    named = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def variable(key: ast.expr | None) -> str | None:
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            value = key.value
        elif isinstance(key, ast.Name):
            value = named.get(key.id, "")
        elif isinstance(key, ast.JoinedStr) and key.values:
            first = key.values[0]
            value = first.value if isinstance(first, ast.Constant) else ""
        else:
            return None
        return value if isinstance(value, str) and value.startswith("TRUENO_") else None

    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if (name == "get" and isinstance(func, ast.Attribute) and _is_environ(func.value)) or (
                name in _READERS
            ):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if _is_environ(node.value):
                key = node.slice
        elif isinstance(node, ast.Compare) and any(isinstance(o, ast.In) for o in node.ops):
            if any(_is_environ(c) for c in node.comparators):
                key = node.left
        found = variable(key)
        if found:
            yield node.lineno, found


def test_trueno_variables_are_read_in_config_only():
    readers = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel != "config.py":
            found = list(_reads(path.read_text()))
            if found:
                readers[rel] = found
    wrong = {rel: found for rel, found in readers.items() if rel not in PENDING}
    assert not wrong, f"TRUENO_* read outside trueno/config.py (add a reader there): {wrong}"
    assert set(readers) == PENDING, (
        f"no longer reading, drop from PENDING: {PENDING - set(readers)}"
    )
    assert list(_reads((ROOT / "config.py").read_text())), "the check sees config's own reads"


def test_a_read_is_seen_in_any_spelling():
    src = (
        "import os\nNAME = 'TRUENO_Y'\n"
        "def f():\n"
        "    a = os.environ.get('TRUENO_A')\n"
        "    b = os.environ[NAME]\n"
        "    c = os.getenv(f'TRUENO_{a}')\n"
        "    d = 'TRUENO_D' in os.environ\n"
        "    e = read_flag('TRUENO_E', True)\n"
        "    os.environ['TRUENO_W'] = '1'\n"  # a write, for a child process: not a read
        "    os.environ.get('HOME')\n"
    )
    assert list(_reads(src)) == [(4, "TRUENO_A"), (5, "TRUENO_Y"), (6, "TRUENO_"), (7, "TRUENO_D"),
                                 (8, "TRUENO_E")]  # fmt: skip


def test_per_call_readers(monkeypatch):
    monkeypatch.delenv("TRUENO_QUANT_ISA", raising=False)
    assert config.quant_isa() is None
    monkeypatch.setenv("TRUENO_QUANT_ISA", " AVX2 ")
    assert config.quant_isa() == "avx2"
    monkeypatch.setenv("TRUENO_QUANT_SIMD", "off")
    assert config.quant_simd() is False
    monkeypatch.setenv("TRUENO_QUANT_SIMD", "nah")
    with pytest.raises(ConfigError, match="TRUENO_QUANT_SIMD='nah'"):
        config.quant_simd()
    monkeypatch.setenv("TRUENO_NUM_THREADS", "3")
    assert config.read_num_threads() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("TRUENO_NUM_THREADS", bad)
        with pytest.raises(ConfigError, match=f"TRUENO_NUM_THREADS='{bad}'"):
            config.read_num_threads()
    monkeypatch.delenv("TRUENO_NUM_THREADS")
    assert config.read_num_threads() is None
    monkeypatch.setenv("TRUENO_API_KEY", "")
    assert config.api_key() is None
    monkeypatch.setenv("TRUENO_API_KEY", "k1")
    assert config.api_key() == "k1"
    monkeypatch.setenv(config.TRACE_LAUNCH_ENV, "12x")
    with pytest.raises(ConfigError, match="TRUENO_TRACE_LAUNCH_NS='12x' is not an integer"):
        config.trace_launch_ns()
    monkeypatch.setenv(config.TRACE_LAUNCH_ENV, "123")
    assert config.trace_launch_ns() == 123
    monkeypatch.setenv(config.TRACE_PARTS_ENV, "/tmp/parts")
    assert config.trace_parts_dir() == "/tmp/parts"


@pytest.mark.parametrize("raw, message", [("soon", "is not a number"), ("-1", "must be positive")])
def test_otlp_timeout_is_checked_at_import(raw, message):
    import subprocess
    import sys

    env = {"TRUENO_TRACE_OTLP_TIMEOUT": raw, "PATH": "/usr/bin:/bin"}
    res = subprocess.run(
        [sys.executable, "-c", "import trueno.config"],
        env={**env, "PYTHONPATH": str(ROOT.parent)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0
    assert f"ConfigError: TRUENO_TRACE_OTLP_TIMEOUT='{raw}' {message}" in res.stderr
