"""Continuous batching: many sequences decoded together, each in its own preallocated KV slot.

    step():
        admit waiting sequences into free slots, reusing the longest cached prompt prefix of
            any slot (its own, or copied from another slot's KV entries)
        prefill: whole prompt chunks of the sequences still prefilling, oldest first, while
            the step's token budget lasts (at least one chunk: no prompt starves), each chunk
            Model.prefill on its slot; a sequence whose prompt is done samples its first
            token right there (``emit`` hands it out before the step's decode runs)
        decode:  one batched forward of every running sequence's next token:
            x = embed(tokens)                                   # (B, dim)
            for each layer:
                qkv = Wqkv @ norm(x)                            # (B, q_dim + 2 kv_dim)
                att[b] = attention(q[b], slot[b].layers[l])     # each over its own KV slot,
                                                                # all rows in one kernel call
                x = x + Wo @ att ; x = x + Wdown @ act(Wgate_up @ norm(x))
            logits = Wout @ norm(x)                             # (B, vocab)
        sample: each sequence with its own Sampler (own seed, own history)

Every row goes through the same kernels as :meth:`Model.decode` (the fused matvec per row,
the attention of each sequence cut and merged as decode's, all rows in one call per layer:
:func:`~trueno.llm.kernels.attention_rows` over the slots' shared KV arrays), and a prompt
is cut into the chunks ``Model.prefill`` cuts it into whatever else runs, so a greedy or
seeded sequence yields exactly the tokens of :func:`trueno.llm.generate.generate_tokens`
whether it runs alone or batched. ``_linear`` is the one place a kernel that multiplies B
vectors per weight read plugs in.

On a GPU runtime the same step runs on device arrays: each quantized matrix product is one
launch of the batched kernel (the weights read once per 8 sequences; each vector's sum its
own, so a sequence's tokens do not depend on what else runs), a float (or dequantized)
matrix one cuBLAS matvec per sequence, attention one call per sequence over its slot; the
step's logits come back to the host in one copy for the samplers.

Why prefill chunks of different sequences are not stacked into one matmul (which would
dequantize each weight once per step instead of once per chunk): BLAS's result for a row
depends on how many rows the call has (measured, OpenBLAS Haswell sgemm: rows of a 40-row
call differ from the same rows inside a 300-row call in the last bits), so a stacked prompt
would not give the tokens it gives alone. The token budget keeps running streams going
instead: they wait at most one budget of prompt tokens per step.

Not thread-safe: one thread owns an engine (``trueno.serve`` runs it on its engine thread);
``BatchSequence.cancel`` is the one call other threads may make.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter_ns

import numpy as np

from trueno.errors import ContextLengthError, ModelError
from trueno.llm.generate import common_prefix
from trueno.llm.kv_cache import RunState, slot_storage
from trueno.llm.model import PREFILL_CHUNK, Model, keys_attended
from trueno.llm.sampler import Sampler
from trueno.trace import recorder


@dataclass(eq=False)
class BatchSequence:
    """One sequence of a batch: its prompt, limits, sampler, and where it stands."""

    prompt: list[int]
    max_tokens: int
    sampler: Sampler = field(default_factory=lambda: Sampler(temperature=0.0))
    stop_at_eog: bool = True
    logprobs: int | None = None  # None: none; k: each token's log-probability and the top k
    n_keep: int = 0  # context shift: prompt tokens kept besides BOS (-1: the whole prompt)
    tag: object = None  # the caller's handle (the server's request/choice)
    # (name, start_ns, end_ns, attrs) of each engine step it took part in, when traced
    spans: list | None = None
    # filled in by the engine
    slot: int = -1
    n_cached: int = 0  # prompt tokens whose KV entries were reused from the slot
    n_prefilled: int = 0  # prompt tokens in the slot's cache
    tokens: list[int] = field(default_factory=list)  # generated so far
    pending: int | None = None  # sampled, not yet run through the model
    t_admit_ns: int = 0  # perf_counter_ns when it got a slot (traced sequences only)
    finish_reason: str | None = None  # "stop" (end of generation), "length", "cancelled"
    cancelled: bool = False

    def cancel(self) -> None:
        """Ask the engine to drop this sequence at its next step (any thread)."""
        self.cancelled = True

    @property
    def prefilling(self) -> bool:
        return self.n_prefilled < len(self.prompt)


@dataclass
class Event:
    """What one step did to a sequence: a new token and/or the end (``finish_reason``)."""

    seq: BatchSequence
    token: int | None
    finish_reason: str | None = None
    logprob: float | None = None  # of ``token``, when the sequence asked for logprobs
    top: list[tuple[int, float]] | None = None  # the most likely (token, logprob), best first


class BatchEngine:
    """``n_slots`` KV slots for one :class:`~trueno.llm.model.Model` (CPU runtime)."""

    def __init__(
        self,
        model: Model,
        n_slots: int = 4,
        prefill_budget: int = PREFILL_CHUNK,
        ctx_shift: bool = False,
    ) -> None:
        """``prefill_budget``: prompt tokens one step may prefill beyond its first chunk (the
        running sequences wait for them: it bounds their inter-token latency). ``ctx_shift``:
        a sequence whose slot is full keeps its first ``n_keep`` tokens (and BOS) and drops
        half of the rest, as llama.cpp's context shift, instead of stopping with "length"."""
        if n_slots < 1:
            raise ModelError(f"a batch needs at least one slot, got {n_slots}")
        c = model.config
        self.model, self.config, self.n_slots = model, c, n_slots
        self.prefill_budget = max(1, int(prefill_budget))
        # one RunState per slot: its own KV cache (the model's cache type), scratch and
        # per-layer records over that cache; the read-only RoPE tables are the model's
        # every slot's keys and values in one pair of arrays (slot s: [:, s]), so that a
        # step's attention is one kernel call per layer over all the slots
        kv_type = model.state.cache.cache_type
        self.k_all, self.v_all = slot_storage(c, model.ctx, n_slots, model.xp, kv_type)
        self.slots = [RunState(c, model.ctx, model.rope_factors, model.rt, kv_type,
                               model.weights, rope=model.state.rope,
                               kv_storage=(self.k_all[:, s], self.v_all[:, s]))
                      for s in range(n_slots)]  # fmt: skip
        # per layer: attention_rows's arguments after (out, qkv) and before (slots, positions)
        self._rows_caches = [(self.k_all[i], self.v_all[i]) for i in range(c.n_layers)]
        self._slot_ids = np.zeros(n_slots, np.int64)  # a step's rows: slot, position
        self._positions = np.zeros(n_slots, np.int64)
        self.slot_tokens: list[list[int]] = [[] for _ in range(n_slots)]  # cached token ids
        # how many of a slot's entries a new prompt may reuse: all, except after a context
        # shift (the entries past n_keep were computed with the dropped tokens in view)
        self.reusable: list[int] = [model.ctx] * n_slots
        self.ctx_shift = bool(ctx_shift)
        self.free: list[int] = list(range(n_slots))
        self.waiting: deque[BatchSequence] = deque()
        self.running: list[BatchSequence] = []
        # batch activations (n_slots rows); a step uses the first B rows
        n, f32, xp = n_slots, np.float32, model.xp
        dim, q_dim, kv_dim, hidden = c.dim, c.q_dim, c.kv_dim, c.hidden_dim
        self.x = xp.zeros((n, dim), f32)  # residual stream
        # the tokens' embedding rows are looked up on the host (then copied to a device)
        self.x_host = self.x if model.rt.host_memory else np.zeros((n, dim), f32)
        self.xb = xp.zeros((n, dim), f32)  # normed input of a sublayer
        self.xo = xp.zeros((n, dim), f32)  # sublayer output
        self.qkv = xp.zeros((n, q_dim + 2 * kv_dim), f32)  # each row: its query, key, value
        self.att = xp.zeros((n, q_dim), f32)
        self.hg = xp.zeros((n, hidden), f32)
        self.hu = xp.zeros((n, hidden), f32)
        self.ha = xp.zeros((n, hidden), f32)
        self.gate_up = xp.zeros((n, 2 * hidden), f32)  # output of the stacked gate|up product
        self.logits = xp.zeros((n, c.vocab_size), f32)
        self.is_eog: Callable[[int], bool] = model.tokenizer.is_eog
        self.n_steps = 0
        # a step of one sequence can take Model.decode's own path on its slot (no MoE layer:
        # the batch runs their experts in exact mode; on the host: no device graph to share)
        self._solo = model.rt.host_memory and all(lw.moe is None for lw in model.weights.layers)

    def warmup(self) -> None:
        """Compile the batched kernels now (seconds for quantized weights), then forget."""
        self.run([BatchSequence([0, 0], 2, stop_at_eog=False) for _ in range(min(2, self.n_slots))])
        for tokens in self.slot_tokens:
            tokens.clear()

    # ---- queue -------------------------------------------------------------------------------
    def add(self, seq: BatchSequence) -> BatchSequence:
        """Queue a sequence; it starts when a slot is free."""
        if not seq.prompt:
            raise ModelError("the prompt is empty (no tokens)")
        if len(seq.prompt) >= self.model.ctx:
            raise ContextLengthError(
                f"the prompt has {len(seq.prompt)} tokens but the context holds {self.model.ctx}"
            )
        if seq.max_tokens < 1:
            raise ModelError(f"max_tokens must be >= 1, got {seq.max_tokens}")
        self.waiting.append(seq)
        return seq

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def slots_in_use(self) -> int:
        return self.n_slots - len(self.free)

    # ---- one step ----------------------------------------------------------------------------
    def step(self, emit: Callable[[list[Event]], None] | None = None) -> list[Event]:
        """Admit, prefill prompt chunks within the token budget, decode every running
        sequence, sample; the step's events. ``emit(events)``, when given, receives them as
        they happen (a first token right after its prompt's last chunk, the rest at the
        end), each event once."""
        events: list[Event] = []
        self._drop_cancelled(events)
        self._admit()
        decoding = [s for s in self.running if not s.prefilling]
        budget, sent = self.prefill_budget, 0
        for i, seq in enumerate([s for s in self.running if s.prefilling]):
            chunk = min(PREFILL_CHUNK, len(seq.prompt) - seq.n_prefilled)
            if i > 0 and chunk > budget:
                break  # whole chunks only: how a prompt is cut never depends on the others
            t0 = perf_counter_ns() if seq.spans is not None else 0
            budget -= self._prefill_chunk(seq, events)
            if seq.spans is not None:
                seq.spans.append(("prefill", t0, perf_counter_ns(),
                                  {"tokens": chunk, "slot": seq.slot}))  # fmt: skip
            if emit is not None and len(events) > sent:
                emit(events[sent:])
                sent = len(events)
        ready = [s for s in decoding if s.finish_reason is None and s.pending is not None]
        full = [s for s in ready if self.slots[s.slot].cache.n >= self.model.ctx]
        for seq in full:
            if not (self.ctx_shift and self._shift(seq)):
                self._finish(seq, "length", events)
        ready = [s for s in ready if s.finish_reason is None]
        if ready:
            traced = [s.spans for s in ready if s.spans is not None]  # off: no clock read
            t0 = perf_counter_ns() if traced else 0
            logits = self._decode(ready)
            if traced:
                attrs = {"batch": len(ready), "step": self.n_steps}
                span = ("decode", t0, perf_counter_ns(), attrs)
                for spans in traced:
                    spans.append(span)
            for b, seq in enumerate(ready):
                self._sample(seq, logits[b], events)
        self.n_steps += 1
        if emit is not None and len(events) > sent:
            emit(events[sent:])
        return events

    def run(self, seqs: list[BatchSequence]) -> list[list[int]]:
        """Run sequences to the end together; their generated tokens (for tests, benches)."""
        for s in seqs:
            self.add(s)
        while self.busy:
            self.step()
        return [s.tokens for s in seqs]

    # ---- scheduling --------------------------------------------------------------------------
    def _drop_cancelled(self, events: list[Event]) -> None:
        for seq in [s for s in self.waiting if s.cancelled]:
            self.waiting.remove(seq)
            seq.finish_reason = "cancelled"
            events.append(Event(seq, None, "cancelled"))
        for seq in [s for s in self.running if s.cancelled]:
            self._finish(seq, "cancelled", events)

    def _admit(self) -> None:
        while self.waiting and self.free:
            seq = self.waiting.popleft()
            pairs = zip(self.slot_tokens, self.reusable, strict=True)
            shared = [min(common_prefix(tokens, seq.prompt), cap) for tokens, cap in pairs]
            # the free slot whose cached tokens share the longest prefix with the prompt
            best = max(self.free, key=shared.__getitem__)
            self.free.remove(best)
            keep = min(shared[best], len(seq.prompt) - 1)
            cache = self.slots[best].cache
            cache.n = keep
            del self.slot_tokens[best][keep:]
            self.reusable[best] = self.model.ctx  # what runs from here on is computed anew
            # any slot (a running one too) sharing more: copy its entries instead of
            # prefilling them (they are written once, below that slot's n, and never moved)
            src = max(range(self.n_slots), key=shared.__getitem__)
            more = min(shared[src], len(seq.prompt) - 1)
            if more > keep:
                other = self.slots[src].cache
                cache.k[:, :, keep:more] = other.k[:, :, keep:more]
                cache.v[:, :, keep:more] = other.v[:, :, keep:more]
                cache.n = keep = more
                self.slot_tokens[best][:] = seq.prompt[:keep]
            seq.slot, seq.n_cached, seq.n_prefilled = best, keep, keep
            if seq.spans is not None:
                seq.t_admit_ns = perf_counter_ns()
            self.running.append(seq)

    def _shift(self, seq: BatchSequence) -> bool:
        """llama.cpp's context shift of a full slot: keep the first n_keep tokens (plus BOS),
        drop half of the rest; False when nothing can be dropped."""
        slot, tokens = self.slots[seq.slot], self.slot_tokens[seq.slot]
        n = slot.cache.n
        n_keep = len(seq.prompt) if seq.n_keep < 0 else seq.n_keep
        bos = self.model.tokenizer.bos_id
        if bos is not None and seq.prompt[0] == bos:
            n_keep += 1
        n_keep = max(0, min(n_keep, self.model.ctx - 4))
        n_discard = (n - n_keep) // 2
        if n_discard < 1:
            return False
        t0 = perf_counter_ns() if seq.spans is not None else 0
        slot.cache.shift(n_keep, n_discard, slot.rope, self.config.rope_neox)
        del tokens[n_keep : n_keep + n_discard]
        self.reusable[seq.slot] = min(self.reusable[seq.slot], n_keep)
        if seq.spans is not None:
            seq.spans.append(("ctx_shift", t0, perf_counter_ns(),
                              {"n_keep": n_keep, "n_discard": n_discard}))  # fmt: skip
        return True

    def _finish(self, seq: BatchSequence, reason: str, events: list[Event]) -> None:
        seq.finish_reason = reason
        if seq in self.running:
            self.running.remove(seq)
        if seq.slot >= 0:
            self.free.append(seq.slot)
            # the cache holds exactly the tokens that ran (a pending token never ran)
            del self.slot_tokens[seq.slot][self.slots[seq.slot].cache.n :]
        events.append(Event(seq, None, reason))

    def _sample(self, seq: BatchSequence, logits: np.ndarray, events: list[Event]) -> None:
        history = seq.prompt + seq.tokens
        tok = seq.sampler.sample(logits, history)
        seq.pending = None
        if seq.stop_at_eog and self.is_eog(tok):
            self._finish(seq, "stop", events)
            return
        seq.tokens.append(tok)
        if seq.logprobs is None:
            events.append(Event(seq, tok))
        else:
            logprob, top = token_logprobs(logits, tok, seq.logprobs)
            events.append(Event(seq, tok, logprob=logprob, top=top))
        if len(seq.tokens) >= seq.max_tokens:
            self._finish(seq, "length", events)
        else:
            seq.pending = tok

    # ---- prefill: a chunk of one sequence's prompt on its slot -------------------------------
    def _prefill_chunk(self, seq: BatchSequence, events: list[Event]) -> int:
        lo = seq.n_prefilled
        chunk = seq.prompt[lo : lo + PREFILL_CHUNK]
        m = self.model
        saved = m.state, m.tokens
        m.state, m.tokens = self.slots[seq.slot], self.slot_tokens[seq.slot]
        try:
            logits = m.prefill(chunk)  # the same chunks Model.prefill runs for the prompt
        finally:
            m.state, m.tokens = saved
        seq.n_prefilled += len(chunk)
        if not seq.prefilling:
            self._sample(seq, logits, events)
        return len(chunk)

    # ---- decode: the next token of B sequences as one batch ----------------------------------
    def _decode(self, seqs: list[BatchSequence]) -> np.ndarray:
        """The next-token logits (B, vocab) of the sequences' pending tokens, on the host:
        :meth:`Model._layers_one` with a batch of rows, attention per sequence."""
        if len(seqs) == 1 and self._solo and not recorder.ENABLED:
            return self._decode_solo(seqs[0])
        m, c, w = self.model, self.config, self.model.weights
        B = len(seqs)
        x, xb, xo = self.x[:B], self.xb[:B], self.xo[:B]
        qkv, att, hg, hu, ha = self.qkv[:B], self.att[:B], self.hg[:B], self.hu[:B], self.ha[:B]
        q_dim, kv_dim, hidden = c.q_dim, c.kv_dim, c.hidden_dim
        slots = [self.slots[s.slot] for s in seqs]
        positions = [s.cache.n for s in slots]
        slot_ids, pos_rows = self._slot_ids[:B], self._positions[:B]
        for b, seq in enumerate(seqs):
            assert seq.pending is not None  # the sampled token this step runs
            w.token_embd.row(seq.pending, self.x_host[b])
            slots[b].pos[0] = positions[b]
            slot_ids[b], pos_rows[b] = seq.slot, positions[b]
        # every row's attention in one call per layer (the CPU kernels; tracing records a
        # span per sequence, and olmo2's full q/k norm runs per row: the per-sequence loop)
        # (one row: decode's own call, measured faster at B=1 than attention_rows)
        rows = (B > 1 and m.rt.host_memory and hasattr(m.kernels, "attention_rows")
                and not recorder.ENABLED and not c.qk_norm_full)  # fmt: skip
        if self.x_host is not self.x:
            m.rt.copy_in(x, self.x_host[:B])
        if c.embed_scale != 1.0:
            x *= np.float32(c.embed_scale)
        for i, lw in enumerate(w.layers):
            # attention: q, k, v of every sequence, then each over its own slot
            m._pre_norm(xb, x, lw.attn_norm)
            if lw.wqkv is not None:
                _linear(lw.wqkv, xb, qkv)
                if lw.bqkv is not None:
                    qkv += lw.bqkv
            else:
                _linear(lw.wq, xb, qkv[:, :q_dim])
                _linear(lw.wk, xb, qkv[:, q_dim : q_dim + kv_dim])
                _linear(lw.wv, xb, qkv[:, q_dim + kv_dim :])
                if lw.bq is not None:
                    qkv[:, :q_dim] += lw.bq
                    qkv[:, q_dim : q_dim + kv_dim] += lw.bk
                    qkv[:, q_dim + kv_dim :] += lw.bv
            if rows:
                ls = m.state.layers[i]  # the model's tables and norms (every slot's are these)
                k_caches, v_caches = self._rows_caches[i]
                m.kernels.attention_rows(att, qkv, k_caches, v_caches, slot_ids, pos_rows,
                                         ls.cos, ls.sin, ls.neox, ls.qk_norm, ls.q_norm,
                                         ls.k_norm, ls.eps, ls.window, ls.scale,
                                         ls.softcap)  # fmt: skip
            for b, s in enumerate(() if rows else slots):
                s.qkv[:] = qkv[b]
                t0 = perf_counter_ns() if recorder.ENABLED else 0
                m._qk_norm_full(s.q, s.k, lw)
                m.kernels.attention(s.layers[i], s.att, s.q, s.k, s.v, positions[b], s.pos,
                                    s.scores)  # fmt: skip
                if t0:  # the span of Model.decode's attention: the KV bytes of this slot
                    m._record_attention(t0, 1, keys_attended(positions[b], s.layers[i].window))
                att[b] = s.att[0]
            _linear(lw.wo, att, xo)
            # x += post_norm(xo); xb = ffn_norm(x) (every slot's record holds the same norms)
            layer = m.state.layers[i]
            m._add_then_norm(xb, x, xo, layer.post_attn_norm, lw.ffn_norm)
            # feed-forward
            if lw.moe is not None:  # rows grouped by expert, each product a fused matvec's
                lw.moe.forward(xb, xo, m._act, exact=True)
            else:
                if lw.w_gate_up is not None:
                    gate_up = self.gate_up[:B]
                    _linear(lw.w_gate_up, xb, gate_up)
                    hg[:] = gate_up[:, :hidden]
                    hu[:] = gate_up[:, hidden:]
                else:
                    _linear(lw.w_gate, xb, hg)
                    _linear(lw.w_up, xb, hu)
                m._act(ha, hg, hu)
                _linear(lw.w_down, ha, xo)
            m._add_residual(x, xo, layer.post_ffn_norm)
        m._pre_norm(xb, x, w.output_norm)
        _linear(w.output, xb, self.logits[:B])
        m._finish_logits(self.logits[:B])
        for b, seq in enumerate(seqs):
            slots[b].cache.n = positions[b] + 1
            assert seq.pending is not None  # _decode runs the sampled, pending tokens
            self.slot_tokens[seq.slot].append(seq.pending)
        return m.rt.to_host(self.logits[:B])

    def _decode_solo(self, seq: BatchSequence) -> np.ndarray:
        """One running sequence: :meth:`Model.decode`'s own step on its slot's state, the same
        kernels as a batch of one without the batch's per-row copies and calls (a lone
        stream, as a server mostly has; SmolLM2, interleaved: 253-263 -> 264-276 tok/s)."""
        assert seq.pending is not None  # the sampled token this step runs
        m, slot = self.model, self.slots[seq.slot]
        saved = m.state
        m.state = slot
        try:
            logits = m._forward_one(seq.pending, slot.cache.n)
        finally:
            m.state = saved
        self.slot_tokens[seq.slot].append(seq.pending)
        return logits[None]


def token_logprobs(logits: np.ndarray, token: int, k: int) -> tuple[float, list]:
    """log softmax(logits)[token] and the k most likely (token, logprob), best first: the
    model's distribution, before temperature, penalties and truncation (as vLLM reports)."""
    x = logits.astype(np.float64)
    m = x.max()
    lse = m + np.log(np.exp(x - m).sum())
    top: list[tuple[int, float]] = []
    if k > 0:
        ids = np.argpartition(-x, k - 1)[:k] if k < len(x) else np.arange(len(x))
        ids = ids[np.lexsort((ids, -x[ids]))]  # by logit, ties by id
        top = [(int(i), float(x[i] - lse)) for i in ids]
    return float(x[token] - lse), top


def _linear(m, xs: np.ndarray, out: np.ndarray) -> None:
    """out[b] = W @ xs[b] for every row b: on the CPU equal bit for bit to decode's fused
    matvec of that row (:meth:`~trueno.llm.weights.Matrix.matvecs_into`); on a GPU the
    batched kernel or a matvec per row (:mod:`trueno.quant.gpu`'s ``matvecs_into``)."""
    m.matvecs_into(xs, out)
