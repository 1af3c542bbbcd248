"""Many clients at once, and clients that leave: continuous batching as users see it."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import requests

from tests.server.conftest import MODEL_NAME
from tests.server.helpers import post

NUM_CLIENTS = 32


def _prompt(i: int) -> str:
    return f"Client {i} asks about topic number {i * 7 % 13}:"


async def _stream_text(client: httpx.AsyncClient, body: dict) -> tuple[str, list[str | None]]:
    text, finishes = "", []
    async with client.stream("POST", "/v1/completions", json=body) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:])["choices"]:
                text += choice["text"]
                finishes.append(choice["finish_reason"])
    return text, finishes


def test_32_concurrent_streams_equal_their_sequential_outputs(server):
    bodies = [{"model": MODEL_NAME, "prompt": _prompt(i), "max_tokens": 12, "temperature": 0}
              for i in range(NUM_CLIENTS)]
    expected = [post(server, "/v1/completions", b).json()["choices"][0]["text"] for b in bodies]

    async def run_all():
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120,
                                     limits=httpx.Limits(max_connections=NUM_CLIENTS + 1)) as client:
            streams = asyncio.gather(*[_stream_text(client, {**b, "stream": True}) for b in bodies])
            most_running = 0.0
            while not streams.done():  # sample the running gauge while the clients stream
                text = (await client.get("/metrics")).text
                line = next(x for x in text.splitlines() if x.startswith("vllm:num_requests_running"))
                most_running = max(most_running, float(line.split()[-1]))
                await asyncio.sleep(0.02)
            return await streams, most_running

    before = server.metrics()
    results, most_running = asyncio.run(run_all())
    after = server.metrics()
    assert [text for text, _ in results] == expected
    assert all(len([f for f in finishes if f]) == 1 for _, finishes in results)
    assert most_running > 1  # the engine batched concurrent requests together
    assert after["vllm:request_success_total"] - before["vllm:request_success_total"] == NUM_CLIENTS


def _gauges(server) -> tuple[float, float, float]:
    m = server.metrics()
    return m["vllm:num_requests_running"], m["vllm:num_requests_waiting"], m["vllm:kv_cache_usage_perc"]


def test_disconnect_mid_stream_aborts_and_frees_the_kv_cache(server):
    body = {"model": MODEL_NAME, "max_tokens": 200, "temperature": 0, "ignore_eos": True, "stream": True}
    before = server.metrics()

    async def start_and_leave():
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            streams = [client.stream("POST", "/v1/completions", json={**body, "prompt": _prompt(i)})
                       for i in range(4)]
            responses = [await s.__aenter__() for s in streams]
            for resp in responses:  # each has produced text: they are running
                async for line in resp.aiter_lines():
                    if line.startswith("data: {"):
                        break
            during = _gauges(server)
            for s in streams:  # close the connections mid-stream
                await s.__aexit__(None, None, None)
            return during

    running, waiting, usage = asyncio.run(start_and_leave())
    assert running + waiting >= 1 and usage > 0
    deadline = time.monotonic() + 10
    while _gauges(server) != (0.0, 0.0, 0.0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gauges(server) == (0.0, 0.0, 0.0)
    after = server.metrics()
    # aborted, not finished: no successes counted and far fewer than 4 x 200 tokens generated
    assert after["vllm:request_success_total"] == before["vllm:request_success_total"]
    assert after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"] < 4 * 200
    assert post(server, "/v1/completions", {"prompt": "still alive", "max_tokens": 2}).status_code == 200


def test_non_streaming_client_that_leaves_is_aborted(server):
    before = server.metrics()
    with pytest.raises(requests.Timeout):  # the client gives up long before 8 x 240 tokens are ready
        requests.post(f"{server.base_url}/v1/completions", timeout=0.2, json={
            "model": MODEL_NAME, "prompt": "wait for me", "max_tokens": 240, "n": 8, "ignore_eos": True})
    deadline = time.monotonic() + 10
    while _gauges(server) != (0.0, 0.0, 0.0) and time.monotonic() < deadline:
        time.sleep(0.05)
    after = server.metrics()
    assert _gauges(server) == (0.0, 0.0, 0.0)
    assert after["vllm:request_success_total"] == before["vllm:request_success_total"]
    assert after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"] < 8 * 240
