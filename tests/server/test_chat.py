"""POST /v1/chat/completions on the real server: chat template, streaming, defaults, logprobs."""
from __future__ import annotations

import requests

from tests.server.conftest import API_KEY, MODEL_NAME
from tests.server.helpers import post, stream_events, token_count

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}]


def chat(server, **body) -> dict:
    resp = post(server, "/v1/chat/completions", {"model": MODEL_NAME, "messages": MESSAGES, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_stream_equals_non_stream_at_temperature_zero(openai_client):
    kwargs = dict(model=MODEL_NAME, messages=MESSAGES, max_tokens=20, temperature=0)
    full = openai_client.chat.completions.create(**kwargs)
    chunks = list(openai_client.chat.completions.create(**kwargs, stream=True,
                                                        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == full.choices[0].message.content
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].usage == full.usage


def test_usage_matches_tokenize_and_max_tokens_defaults_to_the_rest_of_the_context(server):
    num_prompt = token_count(server, messages=MESSAGES)
    result = chat(server, temperature=0, ignore_eos=True)
    assert result["usage"]["prompt_tokens"] == num_prompt
    assert result["usage"]["completion_tokens"] == 256 - num_prompt  # max_model_len is 256
    assert result["choices"][0]["finish_reason"] == "length"


def test_max_completion_tokens_wins_over_max_tokens(server):
    result = chat(server, temperature=0, ignore_eos=True, max_tokens=9, max_completion_tokens=4)
    assert result["usage"]["completion_tokens"] == 4


def test_logprobs_in_chat_format(server):
    result = chat(server, temperature=0, max_tokens=6, ignore_eos=True, logprobs=True, top_logprobs=3)
    content = result["choices"][0]["logprobs"]["content"]
    assert len(content) == 6
    for entry in content:
        assert entry["logprob"] <= 0 and entry["bytes"] == list(entry["token"].encode())
        assert len(entry["top_logprobs"]) == 3
        assert entry["top_logprobs"][0]["logprob"] >= entry["top_logprobs"][-1]["logprob"]
    # temperature 0: the chosen token is the most likely one
    assert all(e["logprob"] == e["top_logprobs"][0]["logprob"] for e in content)


def test_n2_stream_opens_every_choice_with_the_role(server):
    events = stream_events(server, "/v1/chat/completions",
                           {"messages": MESSAGES, "max_tokens": 5, "n": 2, "temperature": 1.0, "seed": 3,
                            "stream": True})
    assert events[-1] == "[DONE]"
    first = [e["choices"][0] for e in events[:2]]
    assert [(c["index"], c["delta"]["role"]) for c in first] == [(0, "assistant"), (1, "assistant")]
    finishes = [c["index"] for e in events[:-1] for c in e["choices"] if c["finish_reason"]]
    assert sorted(finishes) == [0, 1]


def test_text_content_parts_equal_plain_content(server):
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is"},
                                          {"type": "text", "text": "the capital of France?"}]}]
    plain = [{"role": "user", "content": "What is\nthe capital of France?"}]
    a = chat(server, messages=parts, temperature=0, max_tokens=8)
    b = chat(server, messages=plain, temperature=0, max_tokens=8)
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    assert a["usage"] == b["usage"]


def test_chat_template_flag_is_used(app_server):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    messages = [{"role": "user", "content": "hi"}]
    rendered = requests.post(f"{app_server.base_url}/tokenize", json={"prompt": "<user>hi\n<assistant>",
                             "add_special_tokens": False}, timeout=30).json()
    via_template = requests.post(f"{app_server.base_url}/tokenize", json={"messages": messages}, timeout=30).json()
    assert via_template["tokens"] == rendered["tokens"]
    result = requests.post(f"{app_server.v1}/chat/completions", headers=headers, timeout=60,
                           json={"model": "tiny", "messages": messages, "max_tokens": 3}).json()
    assert result["usage"]["prompt_tokens"] == rendered["count"]
