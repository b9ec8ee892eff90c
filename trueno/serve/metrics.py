"""The server's Prometheus metrics, in a registry of their own (one per server)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.0, 2.5, 5.0,
                   10.0, 30.0)  # fmt: skip


class Metrics:
    def __init__(self, n_slots: int) -> None:
        r = self.registry = CollectorRegistry()
        p = "trueno_"
        self.prompt_tokens = Counter(p + "prompt_tokens", "prompt tokens prefilled", registry=r)
        self.cached_tokens = Counter(
            p + "prompt_tokens_cached", "prompt tokens reused from a slot's cache", registry=r
        )
        self.generated_tokens = Counter(p + "generation_tokens", "tokens generated", registry=r)
        self.requests = Counter(p + "requests", "finished requests", ["status"], registry=r)
        self.running = Gauge(p + "requests_running", "sequences in a slot", registry=r)
        self.waiting = Gauge(p + "requests_waiting", "sequences waiting for a slot", registry=r)
        self.slots_in_use = Gauge(p + "slots_in_use", "KV slots holding a sequence", registry=r)
        self.slots_total = Gauge(p + "slots_total", "KV slots (--parallel)", registry=r)
        self.slots_total.set(n_slots)
        self.steps = Counter(p + "engine_steps", "batched engine steps", registry=r)
        self.ttft = Histogram(
            p + "time_to_first_token_seconds", "submission to first token", registry=r,
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.itl = Histogram(
            p + "inter_token_latency_seconds", "time between a sequence's tokens", registry=r,
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)
