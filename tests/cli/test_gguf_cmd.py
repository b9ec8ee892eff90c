"""`trueno gguf info` end to end: a real file written by our writer, the CLI in a subprocess."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from trueno.gguf import write_gguf


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trueno", *args], capture_output=True, text=True, timeout=120
    )


def test_gguf_info_prints_metadata_and_tensors(tmp_path):
    path = tmp_path / "m.gguf"
    tokens = [f"tok{i}" for i in range(1000)]
    write_gguf(
        path,
        {"general.architecture": "llama", "tokenizer.ggml.tokens": tokens},
        {"w": np.ones((4, 32), np.float32), "h": np.zeros(8, np.float16)},
    )
    out = _run("gguf", "info", str(path))
    assert out.returncode == 0, out.stderr
    assert "general.architecture" in out.stdout and "llama" in out.stdout
    assert "tokenizer.ggml.tokens" in out.stdout and "1000" in out.stdout
    assert "tok500" not in out.stdout  # long arrays are summarised
    assert "F32" in out.stdout and "F16" in out.stdout


def test_gguf_info_bad_file_is_one_line_error(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"NOPE" + b"\0" * 60)
    out = _run("gguf", "info", str(path))
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "magic" in out.stderr.lower()


def test_gguf_info_missing_file(tmp_path):
    out = _run("gguf", "info", str(tmp_path / "absent.gguf"))
    assert out.returncode != 0
    assert "absent.gguf" in out.stderr and out.stderr.count("\n") == 1
