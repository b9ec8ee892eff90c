"""One decode step as a CUDA graph: captured once, then replayed with a single launch per token.

A small model's decode step is a few hundred short kernels; launched one by one from Python,
their launch cost outweighs their run time. llama.cpp captures the step into a CUDA graph for
the same reason. Here :class:`StepGraph` runs the step eagerly once (NVRTC compiles, scratch
buffers are allocated), captures it on the second call and replays the graph from then on.

A captured step must launch the same kernels on the same buffers every time: whatever changes
per token (the position, the token's embedding row) is read from device memory, which the
caller fills before :meth:`StepGraph.run`. If capture or replay fails (an allocation inside the
step, an older cupy), ``run`` warns once and stays eager: slower, never wrong.

Imports cupy: load it only when decoding on the GPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import cupy as cp


class StepGraph:
    """``run()`` performs ``step()`` (a zero-argument function that only launches GPU work):
    eagerly on the first call, then through a CUDA graph captured on the second."""

    def __init__(self, step: Callable[[], None]) -> None:
        self.step = step
        self.calls = 0
        self.graph = None
        self.failed: Exception | None = None
        self.stream = cp.cuda.Stream(non_blocking=False)

    @property
    def active(self) -> bool:
        return self.graph is not None and self.failed is None

    def run(self) -> None:
        self.calls += 1
        if self.failed is not None or self.calls == 1:
            self.step()
            return
        if self.graph is None:
            self.graph = self._capture()
            if self.graph is None:
                self.step()
                return
        try:
            cp.cuda.get_current_stream().synchronize()  # the position and embedding copies
            self.graph.launch(stream=self.stream)
            self.stream.synchronize()
        except Exception as exc:  # a launch refused by the driver: nothing of the step ran
            self._give_up("replay", exc)
            self.step()

    def _capture(self):
        try:
            cp.cuda.get_current_stream().synchronize()
            with self.stream:
                self.stream.begin_capture()
                try:
                    self.step()
                finally:
                    graph = self.stream.end_capture()
            return graph
        except Exception as exc:  # the step's launches were recorded, not run: run it eagerly
            self._give_up("capture", exc)
            return None

    def _give_up(self, what: str, exc: Exception) -> None:
        self.failed = exc
        warnings.warn(
            f"CUDA graph {what} of the decode step failed ({type(exc).__name__}: {exc}); "
            "decoding with one launch per kernel",
            RuntimeWarning,
            stacklevel=4,
        )
