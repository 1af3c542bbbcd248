"""POST /v1/completions on the real server: streaming, usage, n, seeds, prompts, sampling fields."""
from __future__ import annotations

import json

import pytest

from tests.server.conftest import MODEL_NAME
from tests.server.helpers import post, stream_events, token_count

PROMPT = "The quick brown fox jumps over the lazy dog. Then"


def complete(server, **body) -> dict:
    resp = post(server, "/v1/completions", {"model": MODEL_NAME, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def eos_token_id(tiny_checkpoint) -> int:
    eos = json.loads((tiny_checkpoint / "generation_config.json").read_text())["eos_token_id"]
    return eos[0] if isinstance(eos, list) else eos


def test_stream_equals_non_stream_at_temperature_zero(openai_client):
    kwargs = dict(model=MODEL_NAME, prompt=PROMPT, max_tokens=24, temperature=0)
    full = openai_client.completions.create(**kwargs)
    chunks = list(openai_client.completions.create(**kwargs, stream=True,
                                                   stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == full.choices[0].text
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == full.usage
    assert all(c.id == chunks[0].id and c.id.startswith("cmpl-") for c in chunks)


def test_stream_ends_with_done(server):
    events = stream_events(server, "/v1/completions", {"prompt": PROMPT, "max_tokens": 5, "stream": True})
    assert events[-1] == "[DONE]"
    assert all(e["object"] == "text_completion" for e in events[:-1])


def test_continuous_usage_stats_count_up_in_every_chunk(server):
    body = {"prompt": PROMPT, "max_tokens": 6, "temperature": 0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    events = stream_events(server, "/v1/completions", body)[:-1]
    counts = [e["usage"]["completion_tokens"] for e in events]
    assert counts == sorted(counts) and counts[-1] == 6
    assert {e["usage"]["prompt_tokens"] for e in events} == {token_count(server, prompt=PROMPT)}


def test_usage_is_exact(server):
    before = server.metrics()
    result = complete(server, prompt=PROMPT, max_tokens=12, temperature=0, ignore_eos=True, logprobs=0)
    after = server.metrics()
    usage = result["usage"]
    assert usage["prompt_tokens"] == token_count(server, prompt=PROMPT)
    assert usage["completion_tokens"] == 12 == len(result["choices"][0]["logprobs"]["tokens"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + 12
    assert result["choices"][0]["finish_reason"] == "length"
    assert after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"] == usage["prompt_tokens"]
    assert after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"] == 12
    assert after["vllm:request_success_total"] - before["vllm:request_success_total"] == 1


def test_n3_streaming_yields_three_indexed_choices(server):
    body = {"prompt": PROMPT, "max_tokens": 10, "n": 3, "temperature": 1.0, "seed": 7}
    full = complete(server, **body)
    events = stream_events(server, "/v1/completions", {**body, "stream": True})
    texts, finishes = {}, {}
    for event in events[:-1]:
        for choice in event["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
            if choice["finish_reason"] is not None:
                finishes[choice["index"]] = finishes.get(choice["index"], 0) + 1
    assert sorted(texts) == [0, 1, 2]
    assert finishes == {0: 1, 1: 1, 2: 1}
    assert [texts[i] for i in range(3)] == [c["text"] for c in full["choices"]]
    assert len({c["text"] for c in full["choices"]}) > 1  # three samples, not one repeated


def test_seeded_requests_repeat(server):
    body = {"prompt": PROMPT, "max_tokens": 16, "temperature": 1.0, "top_p": 0.9, "seed": 1234}
    first, second = complete(server, **body), complete(server, **body)
    other = complete(server, **{**body, "seed": 4321})
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert other["choices"][0]["text"] != first["choices"][0]["text"]


def test_batch_of_prompts_and_token_id_prompts(server):
    prompts = [PROMPT, "Once upon a time"]
    singles = [complete(server, prompt=p, max_tokens=8, temperature=0)["choices"][0]["text"] for p in prompts]
    batch = complete(server, prompt=prompts, max_tokens=8, temperature=0)
    assert [c["index"] for c in batch["choices"]] == [0, 1]
    assert [c["text"] for c in batch["choices"]] == singles
    ids = post(server, "/tokenize", {"prompt": prompts[1]}).json()["tokens"]
    assert complete(server, prompt=ids, max_tokens=8, temperature=0)["choices"][0]["text"] == singles[1]
    both = complete(server, prompt=[ids, ids], max_tokens=8, temperature=0)
    assert [c["text"] for c in both["choices"]] == [singles[1]] * 2
    assert both["usage"]["prompt_tokens"] == 2 * len(ids)


def test_echo_and_logprobs(server):
    result = complete(server, prompt=PROMPT, max_tokens=6, temperature=0, echo=True, logprobs=2)
    choice = result["choices"][0]
    plain = complete(server, prompt=PROMPT, max_tokens=6, temperature=0)["choices"][0]["text"]
    assert choice["text"] == PROMPT + plain
    lp = choice["logprobs"]
    num_prompt = token_count(server, prompt=PROMPT)
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == num_prompt + 6
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None  # nothing predicts token 0
    assert all(v <= 0 for v in lp["token_logprobs"][1:])
    assert all(1 <= len(top) <= 3 for top in lp["top_logprobs"][1:])  # the sampled token + top 2
    offsets = lp["text_offset"]
    assert all(offsets[i + 1] - offsets[i] == len(lp["tokens"][i]) for i in range(len(offsets) - 1))


def test_stop_string_ends_the_text(server):
    reference = complete(server, prompt=PROMPT, max_tokens=24, temperature=0, ignore_eos=True)["choices"][0]["text"]
    stop = next(reference[i:i + 2] for i in range(4, len(reference) - 2) if reference[i:i + 2].strip())
    body = {"prompt": PROMPT, "max_tokens": 24, "temperature": 0, "ignore_eos": True, "stop": [stop]}
    choice = complete(server, **body)["choices"][0]
    assert choice["text"] == reference[:reference.find(stop)]
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", stop)
    events = stream_events(server, "/v1/completions", {**body, "stream": True})
    assert "".join(c["text"] for e in events[:-1] for c in e["choices"]) == choice["text"]


def test_top_k_1_and_min_p_1_are_greedy(server):
    greedy = complete(server, prompt=PROMPT, max_tokens=12, temperature=0)["choices"][0]["text"]
    for field in ({"top_k": 1}, {"min_p": 1.0}):
        sampled = complete(server, prompt=PROMPT, max_tokens=12, temperature=1.0, **field)
        assert sampled["choices"][0]["text"] == greedy, field


def test_penalties_stop_repeats(server):
    base = {"prompt": PROMPT, "max_tokens": 24, "temperature": 0, "ignore_eos": True, "logprobs": 0,
            "return_tokens_as_token_ids": True}

    def num_repeats(**field) -> int:
        tokens = complete(server, **base, **field)["choices"][0]["logprobs"]["tokens"]
        assert all(t.startswith("token_id:") for t in tokens)
        return len(tokens) - len(set(tokens))

    plain = num_repeats()
    assert plain > 0  # the greedy tiny model repeats itself
    for field in ({"repetition_penalty": 1.8}, {"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
        assert num_repeats(**field) < plain, field


def test_logit_bias_min_tokens_and_ignore_eos(server, eos_token_id):
    forced = complete(server, prompt=PROMPT, max_tokens=8, temperature=0, logit_bias={"300": 100})
    assert forced["choices"][0]["text"] == post(server, "/detokenize", {"tokens": [300] * 8}).json()["prompt"]
    to_eos = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0, "logit_bias": {str(eos_token_id): 100}}
    delayed = complete(server, **to_eos, min_tokens=5)
    assert delayed["choices"][0]["finish_reason"] == "stop"
    assert delayed["usage"]["completion_tokens"] == 6  # five forced non-eos tokens, then eos
    ignored = complete(server, **to_eos, ignore_eos=True)
    assert ignored["choices"][0]["finish_reason"] == "length"
    assert ignored["usage"]["completion_tokens"] == 8
