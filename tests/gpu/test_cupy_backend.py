"""The cupy backend's import and availability paths, run where cupy is absent (CI) or blocked:
nothing imports cupy at ``import trueno``; asking for the GPU says what is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from trueno.backends import cupy_backend

BLOCK_CUPY = "import sys; sys.modules['cupy'] = None  # as if cupy were not installed\n"


def run_python(code: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_import_trueno_does_not_import_cupy_or_the_gpu_modules():
    proc = run_python("""
        import sys, numpy as np, trueno
        trueno.add(np.ones(4, np.float32), np.ones(4, np.float32))
        heavy = [m for m in ("cupy", "trueno.device", "trueno.backends.cupy_backend",
                             "trueno.backends.cuda.ops") if m in sys.modules]
        print(heavy)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_without_cupy_forcing_the_gpu_names_the_gpu_extra():
    proc = run_python(
        BLOCK_CUPY
        + textwrap.dedent("""
        import numpy as np, trueno
        from trueno.quant.gpu import prepare_gpu
        for what, call in [("use_backend", lambda: trueno.use_backend("cupy").__enter__()),
                           ("to_device", lambda: trueno.to_device(np.ones(3))),
                           ("prepare_gpu", lambda: prepare_gpu(np.zeros(18, np.uint8),
                                                               "Q4_0", (1, 32)))]:
            try:
                call()
            except trueno.BackendUnavailableError as exc:
                assert isinstance(exc, ImportError)
                print(what, "|", exc)
            else:
                print(what, "| no error")
    """)
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line.split(" |")[0] for line in lines] == ["use_backend", "to_device", "prepare_gpu"]
    for line in lines:
        assert "cupy is not installed" in line and "trueno[gpu]" in line, line


def test_env_forced_cupy_without_cupy_fails_at_the_first_op():
    proc = run_python(
        BLOCK_CUPY
        + textwrap.dedent("""
        import numpy as np, trueno
        try:
            trueno.exp(np.ones(3, np.float32))
        except ImportError as exc:
            print(type(exc).__name__, exc)
    """),
        {"TRUENO_BACKEND": "cupy"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("BackendUnavailableError") and "trueno[gpu]" in proc.stdout


# probe() takes the finder and importer as arguments: the cases a CI machine cannot produce
# (a broken install, a driver error, zero devices) are fed in as plain stand-in objects.


def _cupy_with(device_count):
    def count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    return SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=count)))


def _found(name):
    return object()


@pytest.mark.parametrize(
    "find_spec,importer,ok,reason",
    [
        (lambda name: None, None, False, "cupy is not installed"),
        (
            _found,
            lambda name: (_ for _ in ()).throw(ImportError("libcudart.so.12 missing")),
            False,
            "failed to import (ImportError: libcudart.so.12 missing)",
        ),
        (
            _found,
            lambda name: _cupy_with(RuntimeError("cudaErrorInsufficientDriver")),
            False,
            "CUDA driver/runtime reported an error (RuntimeError: cudaErrorInsufficientDriver)",
        ),
        (_found, lambda name: _cupy_with(0), False, "no CUDA device found"),
        (_found, lambda name: _cupy_with(2), True, ""),
    ],
)
def test_probe_explains_each_failure(find_spec, importer, ok, reason):
    got_ok, got_reason = cupy_backend.probe(find_spec, importer)
    assert got_ok is ok
    assert reason in got_reason if reason else got_reason == ""


def test_availability_is_cached_and_explained():
    first = cupy_backend.available()
    assert cupy_backend.available() is first
    if not first:
        assert cupy_backend.why_unavailable()
    else:
        assert cupy_backend.why_unavailable() == ""
