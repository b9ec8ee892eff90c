"""``trueno info``: capabilities and the per-size dispatch table, human and JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from trueno import dispatch
from trueno.cli.main import main


def test_info_prints_capabilities_and_dispatch(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "cpu " in out and "ISA:" in out and "cores" in out and "numba" in out
    assert "op class" in out and "1e2" in out and "1e7" in out
    for kind in ("elementwise", "reduction", "matrix"):
        assert kind in out


def test_info_json_matches_dispatch():
    out = subprocess.run(
        [sys.executable, "-m", "trueno", "info", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    data = json.loads(out)
    assert set(data["dispatch"]) <= set(dispatch.THRESHOLDS)
    assert data["dispatch"]["matrix"]["10000000"] == "numpy"
    assert "avx2" in data["capabilities"]["isa"]
    quant = data["quant_isa"]  # the quant kernels' ISA level (trueno.quant.kernels)
    assert quant["error"] is None and quant["chosen"] == quant["host"][0]
    assert quant["host"][-1] == "portable" and "portable" in quant["kernels"]


def test_info_json_under_forced_backend():
    import os

    env = {**os.environ, "TRUENO_BACKEND": "numpy"}
    out = subprocess.run(
        [sys.executable, "-m", "trueno", "info", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    data = json.loads(out)
    assert data["forced_backend"] == "numpy"
    assert set(data["dispatch"]["elementwise"].values()) == {"numpy"}
