"""Small HTTP helpers shared by the server tests."""
from __future__ import annotations

import json

import requests


def post(server, path: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(f"{server.base_url}{path}", json=body, timeout=120, **kwargs)


def stream_events(server, path: str, body: dict) -> list:
    """POST a streaming request; the decoded `data:` events, with "[DONE]" kept as a string."""
    with requests.post(f"{server.base_url}{path}", json=body, stream=True, timeout=120) as resp:
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = []
        for line in resp.iter_lines(decode_unicode=True):
            if not line:
                continue
            assert line.startswith("data: "), line
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def token_count(server, **body) -> int:
    """Number of tokens the server's own /tokenize counts for a prompt or messages."""
    resp = post(server, "/tokenize", body)
    assert resp.status_code == 200, resp.text
    return resp.json()["count"]
