"""SamplingParams: vLLM's defaults, normalisation, and one clear error per invalid field."""

import pytest

from runtime.sampling_params import SamplingParams, SamplingType


def test_defaults_match_vllm():
    p = SamplingParams()
    assert (p.n, p.best_of, p.temperature, p.top_p, p.top_k, p.min_p) == (1, None, 1.0, 1.0, 0, 0.0)
    assert (p.presence_penalty, p.frequency_penalty, p.repetition_penalty) == (0.0, 0.0, 1.0)
    assert (p.max_tokens, p.min_tokens, p.logprobs, p.prompt_logprobs, p.seed) == (16, 0, None, None, None)
    assert p.stop == [] and p.stop_token_ids == [] and p.logit_bias is None
    assert p.detokenize and p.skip_special_tokens and p.spaces_between_special_tokens
    assert not p.ignore_eos and not p.include_stop_str_in_output


def test_normalisation():
    p = SamplingParams(stop="###", stop_token_ids=[5, 5, 7], seed=-1, logit_bias={"12": 3}, logprobs=True)
    assert p.stop == ["###"]
    assert p.stop_token_ids == [5, 7]
    assert p.seed is None
    assert p.logit_bias == {12: 3.0}
    assert p.logprobs == 1


def test_sampling_type():
    assert SamplingParams(temperature=0.0).sampling_type is SamplingType.GREEDY
    assert SamplingParams(temperature=0.0).is_greedy
    assert SamplingParams(temperature=0.7).sampling_type is SamplingType.RANDOM
    assert SamplingParams(temperature=0.7, seed=3).sampling_type is SamplingType.RANDOM_SEED
    assert SamplingParams(top_k=-1).top_k == -1  # vLLM's "off" is kept as given


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -2}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"min_p": -0.1}, "min_p"),
        ({"min_p": 1.1}, "min_p"),
        ({"n": 0}, "n"),
        ({"n": 2, "best_of": 1}, "best_of"),
        ({"n": 2, "temperature": 0.0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"min_tokens": -1}, "min_tokens"),
        ({"min_tokens": 17, "max_tokens": 16}, "min_tokens"),
        ({"logprobs": -1}, "logprobs"),
        ({"logprobs": 21}, "logprobs"),
        ({"prompt_logprobs": -1}, "prompt_logprobs"),
        ({"prompt_logprobs": 21}, "prompt_logprobs"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"presence_penalty": -2.5}, "presence_penalty"),
        ({"frequency_penalty": 2.01}, "frequency_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"repetition_penalty": -1.0}, "repetition_penalty"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"stop": ""}, "stop"),
        ({"stop_token_ids": [1, "2"]}, "stop_token_ids"),
        ({"seed": 1.5}, "seed"),
        ({"seed": "7"}, "seed"),
        ({"logit_bias": {1: 101}}, "logit_bias"),
        ({"logit_bias": {1: -100.5}}, "logit_bias"),
        ({"logit_bias": {"a": 1}}, "logit_bias"),
        ({"temperature": "hot"}, "temperature"),
    ],
)
def test_invalid_field_names_itself(kwargs, name):
    with pytest.raises(ValueError) as info:
        SamplingParams(**kwargs)
    assert name in str(info.value)


def test_error_states_the_allowed_range():
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        SamplingParams(top_p=2)
    with pytest.raises(ValueError, match=r"logprobs must be in \[0, 20\]"):
        SamplingParams(logprobs=50)
    with pytest.raises(ValueError, match=r"presence_penalty must be in \[-2, 2\]"):
        SamplingParams(presence_penalty=3)


def test_boundaries_are_accepted():
    SamplingParams(
        temperature=0.0, top_p=1.0, top_k=-1, min_p=1.0, presence_penalty=-2.0, frequency_penalty=2.0,
        logprobs=20, prompt_logprobs=0, min_tokens=16, max_tokens=16, logit_bias={0: -100, 1: 100},
    )
    SamplingParams(max_tokens=None, min_tokens=1000)  # no limit given: any min_tokens


def test_validate_catches_later_changes_and_clone_is_independent():
    p = SamplingParams(stop=["a"], logit_bias={1: 1.0})
    q = p.clone()
    q.stop.append("b")
    q.logit_bias[2] = 2.0
    assert p.stop == ["a"] and p.logit_bias == {1: 1.0}
    q.top_p = 0.0
    with pytest.raises(ValueError, match="top_p"):
        q.validate()


def test_verify_vocab_rejects_out_of_vocabulary_ids():
    SamplingParams(stop_token_ids=[99], logit_bias={0: 1}).verify_vocab(100)
    with pytest.raises(ValueError, match="stop_token_ids"):
        SamplingParams(stop_token_ids=[100]).verify_vocab(100)
    with pytest.raises(ValueError, match="logit_bias"):
        SamplingParams(logit_bias={-1: 1}).verify_vocab(100)
