"""The engine thread runs the kernels with the thread count the server was given: numba's
count is a per-thread setting, so one set where the model was loaded never reached the
engine (``trueno serve -t 1`` decoded on every core)."""

from __future__ import annotations

import threading

import numba
import pytest

from trueno.llm import Model
from trueno.serve.app import Server


@pytest.fixture(scope="module")
def model(tiny_gguf):
    return Model.load(tiny_gguf, ctx_size=64, device="cpu")


def attached(model, threads):
    server = Server("tiny", 1, 0, None, threads=threads)
    server.attach(model)
    try:
        return server.engine.kernel_threads
    finally:
        server.close()


def test_the_engine_runs_on_the_threads_asked_for(model):
    assert attached(model, 1) == 1
    if numba.config.NUMBA_NUM_THREADS >= 2:
        assert attached(model, 2) == 2
    # more than numba has: all it has (as trueno run's -t)
    assert attached(model, 10_000) == numba.config.NUMBA_NUM_THREADS


def test_a_count_set_on_the_loading_thread_does_not_leak_into_the_engine(model):
    """What `trueno serve` did before: set_threads on its loading thread, the engine on
    another thread with numba's default."""
    seen = []

    def load_then_attach():
        numba.set_num_threads(1)
        seen.append(attached(model, None))

    t = threading.Thread(target=load_then_attach)
    t.start()
    t.join()
    assert seen == [numba.config.NUMBA_NUM_THREADS]
