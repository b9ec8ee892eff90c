"""Dispatch: AUTO thresholds, forced backends (context manager and TRUENO_BACKEND), the
unavailable-backend error, and op spans recorded when tracing is on."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import trueno
from trueno import backends, dispatch
from trueno.backends import Backend
from trueno.errors import BackendUnavailableError
from trueno.opspec import OPS

HAS_NUMBA = backends.is_available(Backend.NUMBA)


def test_every_threshold_class_is_known():
    assert {spec.kind for spec in OPS.values()} <= set(dispatch.THRESHOLDS)
    assert {spec.kind64 for spec in OPS.values()} - {None} <= set(dispatch.THRESHOLDS)
    assert set(dispatch.GPU_THRESHOLDS) == set(dispatch.THRESHOLDS)


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
@pytest.mark.skipif(dispatch.forced_backend() is not None, reason="TRUENO_BACKEND is set")
def test_auto_picks_by_size():
    spec = OPS["add"]
    t = dispatch.THRESHOLDS["elementwise"]
    assert dispatch.choose(spec, t - 1) is Backend.NUMPY
    assert dispatch.choose(spec, t) is Backend.NUMBA
    assert dispatch.choose(OPS["matmul"], 1 << 40) is Backend.NUMPY
    assert dispatch.choose(OPS["eigh"], 1 << 40) is Backend.NUMPY


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
@pytest.mark.skipif(dispatch.forced_backend() is not None, reason="TRUENO_BACKEND is set")
def test_a_float64_call_takes_the_ops_float64_class():
    """sin: float64 from "trig64" (numpy's float64 sine is scalar libm), float32 from "trig",
    decided alike by choose(), by run() and by the op's own fast path (its bound64)."""
    spec = OPS["sin"]
    t32, t64 = dispatch.THRESHOLDS["trig"], dispatch.THRESHOLDS["trig64"]
    assert spec.kind64 == "trig64" and t64 < t32
    a32, a64 = np.linspace(-3, 3, t64, dtype=np.float32), np.linspace(-3, 3, t64)
    assert dispatch.choose(spec, t64, (a32,)) is Backend.NUMPY
    assert dispatch.choose(spec, t64, (a64,)) is Backend.NUMBA
    assert dispatch.choose(spec, t64 - 1, (a64[1:],)) is Backend.NUMPY
    assert dispatch.choose(spec, t32, (a32,)) is Backend.NUMBA
    assert (trueno.sin.bound, trueno.sin.bound64) == (t32, t64)
    assert (trueno.add.bound, trueno.add.bound64) == (dispatch.THRESHOLDS["elementwise"],) * 2
    with trueno.trace.capture() as t:
        for x in (a32, a64, a64[1:]):
            np.testing.assert_allclose(trueno.sin(x), np.sin(x), rtol=4e-6)
    backend = [(s["dtype"], s["shape"][0], s["backend"]) for s in t.spans if s["name"] == "sin"]
    assert backend == [("float32", t64, "numpy"), ("float64", t64, "numba"),
                       ("float64", t64 - 1, "numpy")]  # fmt: skip
    with dispatch.use_backend(Backend.NUMPY):  # a forced backend closes both bounds
        assert (trueno.sin.bound, trueno.sin.bound64) == (0, 0)
    assert trueno.sin.bound64 == t64


def test_use_backend_forces_and_restores():
    spec = OPS["add"]
    with trueno.use_backend("numpy"):
        assert dispatch.choose(spec, 1 << 30) is Backend.NUMPY
        assert dispatch.forced_backend() is Backend.NUMPY
        with trueno.use_backend("auto"):
            assert dispatch.forced_backend() is dispatch._ENV_FORCED
    assert dispatch.forced_backend() is dispatch._ENV_FORCED


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
def test_forced_numba_runs_numba_kernels_with_traces():
    x = np.arange(8, dtype=np.float32)
    with trueno.trace.capture() as t, trueno.use_backend(Backend.NUMBA):
        trueno.add(x, x)
        trueno.matmul(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32))
    spans = [s for s in t.spans if s["category"] == "op"]
    assert [(s["name"], s["backend"]) for s in spans] == [("add", "numba"), ("matmul", "numba")]
    assert spans[0]["shape"] == [8] and spans[0]["dtype"] == "float32"
    assert spans[0]["bytes"] == 3 * 8 * 4


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
def test_numba_implements_every_op():
    table = backends.load(Backend.NUMBA).KERNELS
    assert set(OPS) <= set(table)


def test_numpy_implements_every_op():
    assert set(OPS) <= set(backends.load(Backend.NUMPY).KERNELS)


@pytest.mark.skipif(backends.is_available(Backend.CUPY), reason="cupy is installed here")
def test_unavailable_backend_is_an_import_error():
    with pytest.raises(BackendUnavailableError, match="'cupy' is not available") as err:
        with trueno.use_backend("cupy"):
            pass
    assert isinstance(err.value, ImportError)
    assert "trueno[gpu]" in str(err.value)


def test_unknown_backend_name():
    with pytest.raises(BackendUnavailableError, match="unknown backend 'tpu'; expected one of"):
        with trueno.use_backend("tpu"):
            pass


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_env_var_forces_backend():
    code = (
        "import trueno, numpy as np; from trueno import dispatch; "
        "from trueno.opspec import OPS; "
        "print(dispatch.choose(OPS['add'], 1 << 30).value)"
    )
    assert _run(code, TRUENO_BACKEND="numpy").stdout.strip() == "numpy"
    if HAS_NUMBA:
        assert _run(code, TRUENO_BACKEND="numba").stdout.strip() == "numba"
    bad = _run(code, TRUENO_BACKEND="tpu")
    assert bad.returncode != 0 and "TRUENO_BACKEND='tpu' is not a backend" in bad.stderr


@pytest.mark.skipif(dispatch.forced_backend() is not None, reason="TRUENO_BACKEND is set")
def test_auto_small_inputs_record_numpy_spans():
    x = np.arange(4, dtype=np.float32)
    with trueno.trace.capture() as t:
        trueno.exp(x)
        trueno.softmax(x)
    spans = [(s["name"], s["backend"]) for s in t.spans if s["category"] == "op"]
    assert spans == [("exp", "numpy"), ("softmax", "numpy")]


def test_fast_path_agrees_with_choose():
    """run()'s inline small-input decision gives the backend choose() would."""
    for spec in OPS.values():
        for n in (1, 100, dispatch.THRESHOLDS[spec.kind] - 1):
            if dispatch.forced_backend() is None and n < dispatch.THRESHOLDS[spec.kind]:
                assert dispatch.choose(spec, n) is Backend.NUMPY
