"""Every example runs as `python examples/NAME.py`, prints its checked results, and has a
golden trace and a renacer.toml target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "quickstart": ["dot(a, b)  = 70.0", "exp over 1048576 elements matches numpy"],
    "matrix_operations": ["[[ 58.  64.]", "[139. 154.]]", "linear layer"],
    "activation_functions": ["softmax([2, 1, 0.1]) = [0.659  0.2424 0.0986]", "mish"],
    "ml_similarity": ["cosine(a, 2a) = 1.0000", "5 nearest neighbours"],
    "symmetric_eigen": ["eigenvalues (descending)", "64x64 covariance"],
    "backend_detection": ["identical to numpy", "backend chosen per op"],
    "performance_demo": ["speedup", "softmax    1000000"],
    "generate": ["16 generated", "stop: length"],
    "dask_ops": ["softmax    matches numpy: True", "from 2 workers"],
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name):
    res = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    for line in EXAMPLES[name]:
        assert line in res.stdout, res.stdout


def test_every_example_is_listed_and_has_a_golden():
    names = {p.stem for p in (ROOT / "examples").glob("*.py")}
    assert names == set(EXAMPLES)
    for name in names:
        gold = json.loads((ROOT / "golden_traces" / f"{name}.json").read_text())
        assert gold["command"] == [f"examples/{name}.py"] and gold["counts"]
        assert (ROOT / "golden_traces" / f"{name}.summary.txt").stat().st_size < 20_000


def test_example_trace_passes_its_budgets(tmp_path):
    """One example end to end: traced, then every renacer.toml rule of its target passes."""
    from trueno.cli.main import main

    code = main(
        [
            "trace",
            "assert",
            "--config",
            str(ROOT / "renacer.toml"),
            "--",
            str(ROOT / "examples" / "matrix_operations.py"),
        ]
    )
    assert code == 0
