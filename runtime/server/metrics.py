"""The server's /metrics: vLLM's metric names and meanings, so existing dashboards work unchanged.

Gauges and the prefix-cache counters mirror the engine's own `EngineStats`; per-request latencies
and token counts are measured here, from the RequestOutputs the engine loop hands out:
- time to first token: arrival -> the first output that carries a generated token;
- inter-token latency: between two outputs that carry new tokens (one observation per step);
- end-to-end latency: arrival -> the finished output.
The engine loop thread records, HTTP handlers render: a lock keeps the two apart.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from runtime.outputs import RequestOutput
from runtime.server.prometheus import Counter, Gauge, Histogram, Labels, render

# Bucket bounds as vLLM's Prometheus logger uses them.
_TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
_ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                10.0, 20.0, 40.0, 80.0]
_E2E_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]


def _token_buckets(max_model_len: int) -> list[float]:
    """1, 2, 5, 10, 20, 50, ... up to max_model_len, as vLLM's build_1_2_5_buckets."""
    out, scale = [], 1
    while True:
        for m in (1, 2, 5):
            if m * scale > max_model_len:
                return out
            out.append(float(m * scale))
        scale *= 10


@dataclass
class _Tracked:
    arrival_time: float
    num_generated: int = 0
    first_token_time: float | None = None
    last_token_time: float | None = None


class ServerMetrics:
    """Records request progress and renders every metric with label model_name."""

    def __init__(self, model_name: str, max_model_len: int) -> None:
        self._labels: Labels = (("model_name", model_name),)
        self._lock = threading.Lock()
        self._tracked: dict[str, _Tracked] = {}
        self.running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv_usage = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.gpu_usage = Gauge("vllm:gpu_cache_usage_perc",
                               "KV-cache usage. 1 means 100 percent usage (older name of "
                               "vllm:kv_cache_usage_perc).")
        self.prefix_queries = Counter("vllm:prefix_cache_queries_total",
                                      "Prefix cache queries, in terms of number of queried tokens.")
        self.prefix_hits = Counter("vllm:prefix_cache_hits_total",
                                   "Prefix cache hits, in terms of number of cached tokens.")
        self.preemptions = Counter("vllm:num_preemptions_total", "Cumulative number of preemptions.")
        self.prompt_tokens = Counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.")
        self.generation_tokens = Counter("vllm:generation_tokens_total",
                                         "Number of generation tokens processed.")
        self.success = Counter("vllm:request_success_total",
                               "Count of successfully processed requests.")
        self.ttft = Histogram("vllm:time_to_first_token_seconds",
                              "Histogram of time to first token in seconds.", _TTFT_BUCKETS)
        self.itl = Histogram("vllm:inter_token_latency_seconds",
                             "Histogram of inter-token latency in seconds.", _ITL_BUCKETS)
        self.tpot = Histogram("vllm:time_per_output_token_seconds",
                              "Histogram of time per output token in seconds (older name of "
                              "vllm:inter_token_latency_seconds).", _ITL_BUCKETS)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds",
                             "Histogram of e2e request latency in seconds.", _E2E_BUCKETS)
        self.request_prompt = Histogram("vllm:request_prompt_tokens",
                                        "Number of prefill tokens processed.", _token_buckets(max_model_len))
        self.request_generation = Histogram("vllm:request_generation_tokens",
                                            "Number of generation tokens processed.",
                                            _token_buckets(max_model_len))
        for gauge in (self.running, self.waiting, self.kv_usage, self.gpu_usage):
            gauge.set(self._labels, 0.0)
        for counter in (self.prefix_queries, self.prefix_hits, self.preemptions, self.prompt_tokens,
                        self.generation_tokens):
            counter.set_total(self._labels, 0.0)

    # ---- called by the engine loop thread ---------------------------------------------------
    def on_request_added(self, request_id: str, arrival_time: float) -> None:
        with self._lock:
            self._tracked[request_id] = _Tracked(arrival_time)

    def on_request_aborted(self, request_id: str) -> None:
        with self._lock:
            self._tracked.pop(request_id, None)

    def on_output(self, output: RequestOutput, now: float) -> None:
        with self._lock:
            tracked = self._tracked.get(output.request_id)
            if tracked is None:
                return
            num_generated = sum(len(o.token_ids) for o in output.outputs)
            new_tokens = num_generated - tracked.num_generated
            if new_tokens > 0:
                if tracked.first_token_time is None:
                    tracked.first_token_time = now
                    self.ttft.observe(self._labels, now - tracked.arrival_time)
                    self.prompt_tokens.inc(self._labels, len(output.prompt_token_ids))
                    self.request_prompt.observe(self._labels, len(output.prompt_token_ids))
                else:
                    self.itl.observe(self._labels, now - tracked.last_token_time)
                    self.tpot.observe(self._labels, now - tracked.last_token_time)
                self.generation_tokens.inc(self._labels, new_tokens)
                tracked.num_generated = num_generated
                tracked.last_token_time = now
            if output.finished:
                del self._tracked[output.request_id]
                self.e2e.observe(self._labels, now - tracked.arrival_time)
                self.request_generation.observe(self._labels, num_generated)
                for completion in output.outputs:
                    reason = (("finished_reason", str(completion.finish_reason)),)
                    self.success.inc(self._labels + reason)

    # ---- called by /metrics -----------------------------------------------------------------
    def render(self, stats) -> str:
        """The exposition text, with gauges taken from the engine's latest stats."""
        with self._lock:
            if stats is not None:
                usage = float(_stat(stats, "kv_cache_usage", "gpu_cache_usage"))
                self.running.set(self._labels, _stat(stats, "num_running"))
                self.waiting.set(self._labels, _stat(stats, "num_waiting"))
                self.kv_usage.set(self._labels, usage)
                self.gpu_usage.set(self._labels, usage)
                self.prefix_queries.set_total(self._labels, _stat(
                    stats, "prefix_cache_queries", "num_prefix_cache_queries", "prefix_cache_queried_tokens"))
                self.prefix_hits.set_total(self._labels, _stat(
                    stats, "prefix_cache_hits", "num_prefix_cache_hits", "prefix_cache_hit_tokens"))
                self.preemptions.set_total(self._labels, _stat(stats, "num_preemptions", "preemptions"))
            return render([
                self.running, self.waiting, self.kv_usage, self.gpu_usage, self.prefix_queries,
                self.prefix_hits, self.preemptions, self.prompt_tokens, self.generation_tokens,
                self.success, self.ttft, self.itl, self.tpot, self.e2e, self.request_prompt,
                self.request_generation,
            ])


def _stat(stats, *names: str) -> float:
    """The first of `names` the stats object has (field names differ between engine versions)."""
    for name in names:
        value = getattr(stats, name, None)
        if value is not None:
            return float(value)
    return 0.0
