"""``trueno.warmup()`` compiles every numba kernel for float32 and float64."""

from __future__ import annotations

import io

import pytest

import trueno
from trueno import backends
from trueno.backends import Backend
from trueno.opspec import OPS


@pytest.mark.skipif(not backends.is_available(Backend.NUMBA), reason="numba not installed")
def test_warmup_compiles_float32_and_float64(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    n = trueno.warmup(progress=True)
    assert n >= 2 * len([s for s in OPS.values() if s.args != "mat"])
    assert "trueno warmup [" in err.getvalue() and f"{n}/{n}" in err.getvalue()
    from trueno.backends.numba_kernels import elementwise, rowwise

    for kern in (elementwise._exp, elementwise._add, rowwise._softmax_rows):
        dtypes = {str(sig[1].dtype) for sig in kern.signatures}
        assert {"float32", "float64"} <= dtypes


def test_warmup_quiet_when_not_a_terminal(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    trueno.warmup()
    assert err.getvalue() == ""
