"""Fixtures of the server tests: a live ``trueno serve`` on 127.0.0.1 over a tiny model
(the helpers live in serve_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("openai")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_helpers import API_KEY, SHIFT_CTX, LiveServer, write_tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("serve") / "tiny.gguf")


@pytest.fixture(scope="session")
def live(tiny_gguf):
    srv = LiveServer(tiny_gguf)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def live_shift(tiny_gguf):
    """A live server over a small context with --ctx-shift (test_app's context-shift test)."""
    srv = LiveServer(tiny_gguf, ctx_size=SHIFT_CTX, ctx_shift=True)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def live_key(tiny_gguf):
    srv = LiveServer(tiny_gguf, api_key=API_KEY)
    yield srv
    srv.stop()
