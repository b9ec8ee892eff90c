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


def test_openmp_workers_wait_passively_unless_told(tiny_gguf, monkeypatch, capsys):
    import os

    for given, expect in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        if given is None:
            monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        else:
            monkeypatch.setenv("OMP_WAIT_POLICY", given)
        assert main(["serve", "-m", str(tiny_gguf), "--parallel", "0"]) == 1
        assert os.environ["OMP_WAIT_POLICY"] == expect


def test_cache_type_flag_reaches_the_model_loader():
    """``--cache-type`` (``-ctk``) as on run and chat: load_model reads args.cache_type."""
    from trueno.cli.main import build_parser

    args = build_parser().parse_args(["serve", "-m", "x.gguf", "-ctk", "f16"])
    assert args.cache_type == "f16"
    assert build_parser().parse_args(["serve", "-m", "x.gguf"]).cache_type is None
