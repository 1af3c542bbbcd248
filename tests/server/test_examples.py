"""The examples of the serving documentation (executing-inference.md) against our server,
unchanged except for the host and port: raw `requests`, the official `openai` client, and curl."""
from __future__ import annotations

import json
import subprocess

import requests

from tests.server.conftest import MODEL_NAME


def test_requests_completion_example(server):
    url = f"{server.base_url}/v1/completions"
    headers = {"Content-Type": "application/json"}
    payload = {"model": MODEL_NAME, "prompt": "The future of AI is", "max_tokens": 50, "temperature": 0.8}
    response = requests.post(url, headers=headers, json=payload, timeout=120)
    result = response.json()
    assert response.status_code == 200
    assert isinstance(result["choices"][0]["text"], str)
    assert result["id"].startswith("cmpl-") and result["object"] == "text_completion"
    assert result["model"] == MODEL_NAME
    assert result["usage"]["completion_tokens"] <= 50


def test_openai_client_completion_example(openai_client):
    result = openai_client.completions.create(
        model=MODEL_NAME, prompt="Explain quantum computing in simple terms:", max_tokens=100, temperature=0.7)
    assert isinstance(result.choices[0].text, str)
    assert result.choices[0].finish_reason in ("stop", "length")
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_openai_client_chat_example(openai_client):
    chat = openai_client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "What is the capital of France?"}],
        max_tokens=50, temperature=0.7)
    assert chat.id.startswith("chatcmpl-") and chat.object == "chat.completion"
    assert chat.choices[0].message.role == "assistant"
    assert isinstance(chat.choices[0].message.content, str)
    assert 1 <= chat.usage.completion_tokens <= 50


def _curl(url: str, body: str) -> dict:
    out = subprocess.run(["curl", "-sS", "--max-time", "120", url, "-H", "Content-Type: application/json",
                          "-d", body], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_curl_completion_example(server):
    result = _curl(f"{server.base_url}/v1/completions", """{
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "prompt": "Explain quantum computing in simple terms:",
            "max_tokens": 100,
            "temperature": 0.7
        }""")
    assert isinstance(result["choices"][0]["text"], str)
    assert result["choices"][0]["finish_reason"] in ("stop", "length")


def test_curl_chat_example(server):
    result = _curl(f"{server.base_url}/v1/chat/completions", """{
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"}
            ],
            "max_tokens": 50,
            "temperature": 0.7
        }""")
    assert result["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(result["choices"][0]["message"]["content"], str)
    assert result["usage"]["completion_tokens"] >= 1


def test_models_health_version(server, openai_client):
    models = openai_client.models.list()
    assert [m.id for m in models.data] == [MODEL_NAME]
    assert models.data[0].max_model_len == 256
    assert requests.get(f"{server.base_url}/health", timeout=10).status_code == 200
    assert requests.get(f"{server.base_url}/version", timeout=10).json()["version"]
