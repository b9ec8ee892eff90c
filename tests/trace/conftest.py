"""Fixtures for the tracing tests: one real traced program run once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tracefx import PROGRAM

from trueno.trace import runner


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
