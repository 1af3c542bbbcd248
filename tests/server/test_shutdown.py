"""SIGTERM: stop accepting, finish (or, past --shutdown-timeout, abort) what is in flight, exit 0."""
from __future__ import annotations

import json
import signal
import threading

import pytest
import requests

from tests.server.conftest import start_server, stop_server


def _stream_in_background(server, body: dict):
    """Start a stream in a thread; returns (first_chunk_seen event, result dict, thread)."""
    first_chunk, result = threading.Event(), {"events": [], "error": None}

    def run():
        try:
            with requests.post(f"{server.base_url}/v1/completions", json=body, stream=True, timeout=60) as resp:
                for line in resp.iter_lines(decode_unicode=True):
                    if line.startswith("data: "):
                        data = line[6:]
                        result["events"].append(data if data == "[DONE]" else json.loads(data))
                        first_chunk.set()
        except requests.RequestException as exc:  # the server cut the connection
            result["error"] = exc
        finally:
            first_chunk.set()

    thread = threading.Thread(target=run)
    thread.start()
    return first_chunk, result, thread


def test_sigterm_finishes_in_flight_requests_then_exits_0(tiny_artifact, tmp_path):
    server = start_server(tiny_artifact, tmp_path / "server.log", "--shutdown-timeout", "60")
    body = {"prompt": "Tell me everything", "max_tokens": 60, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    first_chunk, result, thread = _stream_in_background(server, body)
    assert first_chunk.wait(60)
    server.proc.send_signal(signal.SIGTERM)
    thread.join(60)
    assert server.proc.wait(60) == 0, server.log()
    assert result["error"] is None and result["events"][-1] == "[DONE]"
    assert result["events"][-2]["usage"]["completion_tokens"] == 60  # it ran to the end
    with pytest.raises(requests.ConnectionError):  # no longer accepting
        requests.get(f"{server.base_url}/health", timeout=5)
    assert "Traceback" not in server.log()


def test_sigterm_aborts_requests_that_outlive_the_shutdown_timeout(tiny_artifact, tmp_path):
    server = start_server(tiny_artifact, tmp_path / "server.log", "--shutdown-timeout", "0")
    body = {"prompt": "Tell me everything", "max_tokens": 240, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    first_chunk, result, thread = _stream_in_background(server, body)
    assert first_chunk.wait(60)
    assert stop_server(server) == 0, server.log()
    thread.join(60)
    events = result["events"]
    assert not [e for e in events if isinstance(e, dict) and e.get("usage")]  # cut short
    assert events[-2]["error"]["code"] == 503 and events[-1] == "[DONE]"  # but closed properly
    assert "Traceback" not in server.log()
