"""The engine thread: it alone owns the model and its :class:`~trueno.llm.batch.BatchEngine`.

HTTP handlers (on the event loop) ``submit`` sequences and receive their events on an
asyncio queue; the engine thread never touches a socket. Each step's events go back to the
loop in one ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time

from trueno.errors import TruenoError
from trueno.llm.batch import BatchEngine, BatchSequence, Event
from trueno.serve.metrics import Metrics

log = logging.getLogger("trueno.serve")


class Choice:
    """The server's handle on one sequence (one of a request's ``n`` choices)."""

    def __init__(self, index: int, events: asyncio.Queue, loop, on_finish=None) -> None:
        self.index, self.events, self.loop = index, events, loop
        self.on_finish = on_finish  # called on the loop with the finish reason
        self.t_submit = time.perf_counter()
        self.t_last = 0.0


class EngineThread:
    def __init__(self, model, n_slots: int, metrics: Metrics, ctx_shift: bool = False,
                 threads: int | None = None) -> None:  # fmt: skip
        """``threads``: numba threads of the engine's kernels (None: numba's default). numba's
        thread count is a per-thread setting, so the engine thread sets its own: a count set
        on the thread that loaded the model does not reach it."""
        self.model, self.metrics, self.ctx_shift = model, metrics, ctx_shift
        self.threads = threads
        self.kernel_threads = 0  # numba's thread count on the engine thread, once started
        self.engine = BatchEngine(model, n_slots, ctx_shift=ctx_shift)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trueno-engine", daemon=True)

    def start(self) -> None:
        """Start the thread; returns once it compiled the batched kernels (every numba
        parallel call then comes from this one thread)."""
        self._warm = threading.Event()
        self._thread.start()
        self._warm.wait()

    def stop(self) -> None:
        self._stop.set()
        self.inbox.put(None)
        self._thread.join(timeout=10)

    def submit(self, seq: BatchSequence) -> None:
        """Queue a sequence (any thread); its tag must be a :class:`Choice`."""
        self.inbox.put(seq)

    # ---- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        import numba

        eng = self.engine
        try:
            if self.threads:
                numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
            self.kernel_threads = numba.get_num_threads()
            eng.warmup()
        finally:
            self._warm.set()
        while not self._stop.is_set():
            try:
                self._take(block=not eng.busy)
                if not eng.busy:
                    continue
                eng.step(emit=self._emit)  # a first token leaves before the step's decode
            except Exception as exc:  # a bug must not kill the server: fail the batch
                log.exception("engine step failed")
                self._fail_all(exc)
                continue
            self._gauges()

    def _emit(self, events: list[Event]) -> None:
        self._account(events)
        self._deliver(events)

    def _take(self, block: bool) -> None:
        items = []
        try:
            items.append(self.inbox.get(timeout=0.2) if block else self.inbox.get_nowait())
            while True:
                items.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        for seq in items:
            if seq is None:
                continue
            try:
                self.engine.add(seq)
            except TruenoError as exc:
                self._deliver([Event(seq, None, "error")], error=exc)

    def _account(self, events: list[Event]) -> None:
        m, now = self.metrics, time.perf_counter()
        for ev in events:
            ch = ev.seq.tag
            if ev.token is not None:
                m.generated_tokens.inc()
                if ch.t_last == 0.0:
                    m.ttft.observe(now - ch.t_submit)
                    m.prompt_tokens.inc(len(ev.seq.prompt) - ev.seq.n_cached)
                    m.cached_tokens.inc(ev.seq.n_cached)
                else:
                    m.itl.observe(now - ch.t_last)
                ch.t_last = now

    def _gauges(self) -> None:
        m, eng = self.metrics, self.engine
        m.steps.inc()
        m.running.set(len(eng.running))
        m.waiting.set(len(eng.waiting))
        m.slots_in_use.set(eng.slots_in_use)

    def _deliver(self, events: list[Event], error: Exception | None = None) -> None:
        by_loop: dict = {}
        for ev in events:
            by_loop.setdefault(ev.seq.tag.loop, []).append(ev)
        for loop, evs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_dispatch, evs, error)
            except RuntimeError:  # the loop is closed (server shutting down)
                pass

    def _fail_all(self, exc: Exception) -> None:
        eng = self.engine
        seqs = list(eng.waiting) + list(eng.running)
        self.engine = BatchEngine(self.model, eng.n_slots, ctx_shift=self.ctx_shift)
        self.metrics.slots_in_use.set(0)
        self._deliver([Event(s, None, "error") for s in seqs], error=exc)


def _dispatch(events: list[Event], error: Exception | None) -> None:
    for ev in events:
        ch = ev.seq.tag
        if ev.finish_reason is not None and ch.on_finish is not None:
            ch.on_finish(ev.finish_reason)  # even when nobody reads the queue any more
        ch.events.put_nowait((ch.index, ev, error))
