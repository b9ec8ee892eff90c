"""Fixtures for the tracing tests: one real traced program run once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tracefx import PROGRAM

from trueno.trace import recorder, runner


@pytest.fixture(autouse=True)
def _tracing_off_and_restored():
    """Each test starts with tracing off and leaves the process's tracer as it found it (the
    suite may itself run under `trueno trace run`, e.g. `make profile-test`)."""
    saved = recorder._recorder, recorder.ENABLED
    recorder._recorder, recorder.ENABLED = None, False
    yield
    recorder._recorder, recorder.ENABLED = saved


@pytest.fixture(scope="session")
def program(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prog") / "traced_program.py"
    path.write_text(PROGRAM)
    return path


@pytest.fixture(scope="session")
def real_trace(program) -> dict:
    """The program (with a child process) traced twice, syscalls from /proc."""
    return runner.trace_command(
        [sys.executable, str(program), "child"], repeat=2, syscalls="proc", quiet=True
    )
