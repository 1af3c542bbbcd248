"""GET /metrics: Prometheus text with vLLM's metric names, types and histogram buckets."""
from __future__ import annotations

import re

import requests

from tests.server.helpers import post

EXPECTED_TYPES = {
    "vllm:num_requests_running": "gauge", "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge", "vllm:gpu_cache_usage_perc": "gauge",
    "vllm:prompt_tokens_total": "counter", "vllm:generation_tokens_total": "counter",
    "vllm:request_success_total": "counter", "vllm:prefix_cache_queries_total": "counter",
    "vllm:prefix_cache_hits_total": "counter", "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram", "vllm:time_per_output_token_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
}


def test_metrics_use_vllm_names_types_and_buckets(server):
    prompt = "A prompt long enough to fill one whole block of the prefix cache, and then some more."
    for _ in range(2):  # the second run finds the first one's prompt blocks in the prefix cache
        assert post(server, "/v1/completions", {"prompt": prompt, "max_tokens": 4}).status_code == 200
    resp = requests.get(f"{server.base_url}/metrics", timeout=30)
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.text
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert {name: types.get(name) for name in EXPECTED_TYPES} == EXPECTED_TYPES
    samples = server.metrics()
    assert samples["vllm:prefix_cache_hits_total"] > 0
    assert samples["vllm:prefix_cache_queries_total"] >= samples["vllm:prefix_cache_hits_total"]
    assert re.search(r'^vllm:request_success_total\{model_name="[^"]+",finished_reason="length"\} ', text, re.M)
    for name in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds"):
        buckets = [float(v) for v in re.findall(rf'^{name}_bucket\{{[^}}]*le="[^"]+"\}} (\S+)$', text, re.M)]
        assert len(buckets) > 10 and buckets == sorted(buckets)  # cumulative
        inf = float(re.search(rf'^{name}_bucket\{{[^}}]*le="\+Inf"\}} (\S+)$', text, re.M).group(1))
        assert inf == buckets[-1] == samples[f"{name}_count"] >= 2
        assert samples[f"{name}_sum"] > 0
