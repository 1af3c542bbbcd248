"""Bad requests: the right status, OpenAI's error shape, and no harm to anyone else."""
from __future__ import annotations

import threading

import openai
import pytest
import requests

from tests.server.conftest import API_KEY, MODEL_NAME
from tests.server.helpers import post, stream_events

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = [{"role": "user", "content": "hello"}]

BAD_REQUESTS = [
    # (path, body, status, param or None, words the message must contain)
    (COMPLETIONS, {"prompt": "x", "temperature": -0.5}, 400, "temperature", "temperature"),
    (COMPLETIONS, {"prompt": "x", "top_p": 1.5}, 400, "top_p", "top_p"),
    (COMPLETIONS, {"prompt": "x", "n": 0}, 400, "n", "n must be"),
    (COMPLETIONS, {"prompt": "x", "max_tokens": 0}, 400, "max_tokens", "max_tokens"),
    (COMPLETIONS, {"prompt": "x", "logprobs": 21}, 400, "logprobs", "logprobs"),
    (COMPLETIONS, {"prompt": "x", "presence_penalty": 3}, 400, "presence_penalty", "presence_penalty"),
    (COMPLETIONS, {"prompt": "x", "stream_options": {"include_usage": True}}, 400, None, "stream=True"),
    (COMPLETIONS, {"prompt": [1, 2, 1_000_000]}, 400, "prompt", "out of vocabulary"),
    (COMPLETIONS, {"prompt": []}, 400, "prompt", "prompt"),
    (COMPLETIONS, {"prompt": "x", "logit_bias": {"999999": 5}}, 400, "logit_bias", "logit_bias"),
    (COMPLETIONS, {"prompt": "x", "stop_token_ids": [999999]}, 400, "stop_token_ids", "stop_token_ids"),
    (COMPLETIONS, {"prompt": "x", "temperature": "hot"}, 400, "temperature", "temperature"),
    (COMPLETIONS, {"max_tokens": 3}, 400, "prompt", "prompt"),
    (COMPLETIONS, {"prompt": "x", "max_tokens": 300}, 400, "max_tokens",
     "This model's maximum context length is 256 tokens. However, you requested 302 tokens "
     "(2 in the messages, 300 in the completion). Please reduce the length of the messages or completion."),
    (COMPLETIONS, {"prompt": "x", "model": "no-such-model"}, 404, "model", "The model `no-such-model` does not exist."),
    (CHAT, {"messages": []}, 400, "messages", "messages"),
    (CHAT, {"messages": "hello"}, 400, "messages", "messages"),
    (CHAT, {"messages": [{"content": "no role"}]}, 400, "messages", "role"),
    (CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages", "role"),
    (CHAT, {"messages": MESSAGES, "top_logprobs": 2}, 400, None, "`logprobs` must be set to true"),
    (CHAT, {"messages": MESSAGES, "logprobs": True, "top_logprobs": 21}, 400, "logprobs", "20"),
    (CHAT, {"messages": MESSAGES, "max_tokens": 10_000}, 400, "max_tokens", "maximum context length is 256"),
    (CHAT, {"messages": MESSAGES, "n": 2, "temperature": 0}, 400, "n", "greedy"),
    (CHAT, {"messages": MESSAGES, "model": "no-such-model"}, 404, "model", "does not exist"),
    ("/detokenize", {"tokens": [1_000_000]}, 400, "tokens", "out of vocabulary"),
]


def _check_error(resp: requests.Response, status: int, param: str | None, words: str) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status
    assert error["type"] == {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError"}[status]
    assert error["param"] == param
    assert words in error["message"]


@pytest.mark.parametrize("path, body, status, param, words", BAD_REQUESTS,
                         ids=[f"{p.rsplit('/', 1)[-1]}-{i}" for i, (p, *_) in enumerate(BAD_REQUESTS)])
def test_bad_request_gets_its_status_and_the_next_request_works(server, path, body, status, param, words):
    _check_error(post(server, path, body), status, param, words)
    good = post(server, COMPLETIONS, {"prompt": "x", "max_tokens": 2})
    assert good.status_code == 200 and good.json()["usage"]["completion_tokens"] >= 1


def test_malformed_json_is_400(server):
    resp = requests.post(f"{server.base_url}{COMPLETIONS}", data=b'{"prompt": "x",', timeout=30,
                         headers={"Content-Type": "application/json"})
    _check_error(resp, 400, None, "not valid JSON")


def test_unknown_route_is_404_in_the_error_shape(server):
    _check_error(requests.get(f"{server.base_url}/v1/nothing-here", timeout=30), 404, None, "/v1/nothing-here")


def test_openai_client_raises_its_typed_errors(openai_client):
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        openai_client.completions.create(model=MODEL_NAME, prompt="x", max_tokens=1000)
    with pytest.raises(openai.NotFoundError):
        openai_client.completions.create(model="other", prompt="x", max_tokens=2)


def test_bad_requests_do_not_disturb_a_running_stream(server):
    body = {"prompt": "A long story begins", "max_tokens": 120, "temperature": 0, "ignore_eos": True}
    reference = post(server, COMPLETIONS, body).json()["choices"][0]["text"]
    streamed = {}
    thread = threading.Thread(target=lambda: streamed.setdefault(
        "events", stream_events(server, COMPLETIONS, {**body, "stream": True})))
    thread.start()
    for path, bad, status, *_ in BAD_REQUESTS:
        assert post(server, path, bad).status_code == status
    thread.join(120)
    assert "".join(c["text"] for e in streamed["events"][:-1] for c in e["choices"]) == reference


def test_api_key_guards_v1_routes_only(app_server):
    url = f"{app_server.v1}/models"
    _check_error(requests.get(url, timeout=30), 401, None, "Unauthorized")
    _check_error(requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=30), 401, None, "Unauthorized")
    assert requests.get(url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30).json()["data"][0]["id"] == "tiny"
    for open_path in ("/health", "/metrics", "/version"):
        assert requests.get(f"{app_server.base_url}{open_path}", timeout=30).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="wrong", base_url=app_server.v1, max_retries=0).models.list()
    client = openai.OpenAI(api_key=API_KEY, base_url=app_server.v1, max_retries=0)
    assert client.completions.create(model="tiny", prompt="x", max_tokens=2).usage.completion_tokens >= 1
