"""``import trueno`` stays cheap: no numba, cupy, opentelemetry, jinja2 or dask. (Its time on top of
``import numpy`` is a benchmark: benches/import_time.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("numba", "llvmlite", "cupy", "opentelemetry", "jinja2", "dask", "distributed")


def test_import_does_not_load_heavy_modules():
    code = (
        "import sys, trueno; trueno.add([1.0], [2.0]); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()
    assert out == "[]"


def test_a_yes_no_setting_has_one_parser(monkeypatch):
    from trueno import config
    from trueno.errors import ConfigError

    for raw, want in (("1", True), ("TRUE", True), ("on", True), ("yes", True), ("", False)):
        monkeypatch.setenv("TRUENO_X", raw)
        assert config.read_flag("TRUENO_X", False) is want
    for raw in ("0", "false", "Off", "no"):
        monkeypatch.setenv("TRUENO_X", raw)
        assert config.read_flag("TRUENO_X", True) is False
    monkeypatch.setenv("TRUENO_X", "maybe")
    with pytest.raises(ConfigError, match="TRUENO_X='maybe' is not a yes/no value"):
        config.read_flag("TRUENO_X", True)
