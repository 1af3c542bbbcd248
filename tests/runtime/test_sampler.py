"""Sampler: each sampling parameter changes the next token the way vLLM's does."""

import math

import pytest
import torch

from runtime.sampler import (
    Sampler,
    SamplingMetadata,
    compute_prompt_logprobs,
    make_generator,
    process_logits,
)
from runtime.sampling_params import SamplingParams

VOCAB = 32


def metadata(params, outputs=None, prompts=None, generators=None, eos=()):
    n = len(params)
    return SamplingMetadata.build(
        params,
        prompt_token_ids=prompts or [[1, 2]] * n,
        output_token_ids=outputs or [[]] * n,
        generators=generators,
        eos_token_ids=eos,
    )


def sample(logits, params, sampler=None, **kwargs):
    return (sampler or Sampler(seed=0))(logits, metadata(params, **kwargs))


def random_logits(num_rows, seed=0, vocab=VOCAB):
    return torch.randn(num_rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def test_greedy_is_argmax():
    logits = random_logits(6)
    out = sample(logits, [SamplingParams(temperature=0.0)] * 6)
    assert out.sampled_token_ids == logits.argmax(dim=-1).tolist()
    assert out.logprobs == [None] * 6


def test_greedy_rows_in_a_mixed_batch_are_argmax():
    logits = random_logits(4)
    params = [SamplingParams(temperature=0.0), SamplingParams(), SamplingParams(temperature=0.0), SamplingParams()]
    out = sample(logits, params)
    assert [out.sampled_token_ids[i] for i in (0, 2)] == logits[[0, 2]].argmax(dim=-1).tolist()


@pytest.mark.parametrize("params", [SamplingParams(top_k=1), SamplingParams(top_p=1e-6), SamplingParams(min_p=1.0)])
def test_filters_that_keep_one_token_equal_greedy(params):
    logits = random_logits(64, seed=1)
    sampler = Sampler(seed=0)
    for _ in range(3):
        assert sample(logits, [params] * 64, sampler).sampled_token_ids == logits.argmax(dim=-1).tolist()


def test_unfiltered_sampling_is_not_greedy():
    # Guards the test above: with these logits plain sampling does leave the argmax.
    logits = random_logits(64, seed=1) / 3
    assert sample(logits, [SamplingParams()] * 64).sampled_token_ids != logits.argmax(dim=-1).tolist()


def test_top_k_keeps_only_the_k_most_likely():
    logits = torch.log(torch.tensor([[0.3, 0.25, 0.2, 0.15, 0.1]])).repeat(2000, 1)
    tokens = sample(logits, [SamplingParams(top_k=2)] * 2000).sampled_token_ids
    assert set(tokens) == {0, 1}


def test_top_k_applies_per_row():
    logits = torch.log(torch.tensor([[0.3, 0.25, 0.2, 0.15, 0.1]])).repeat(3000, 1)
    params = [SamplingParams(top_k=2), SamplingParams(top_k=0), SamplingParams(top_k=-1)] * 1000
    tokens = sample(logits, params).sampled_token_ids
    assert set(tokens[0::3]) == {0, 1}
    assert set(tokens[1::3]) == set(tokens[2::3]) == {0, 1, 2, 3, 4}
    with_top_p = [SamplingParams(top_k=3, top_p=0.5), SamplingParams(top_k=4, top_p=0.9)] * 1000
    tokens = sample(logits[:2000], with_top_p).sampled_token_ids
    assert set(tokens[0::2]) == {0, 1} and set(tokens[1::2]) == {0, 1, 2, 3}


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    tokens = sample(logits, [SamplingParams(top_p=0.7)] * 2000).sampled_token_ids
    assert set(tokens) == {0, 1}  # 0.5 alone is short of 0.7; 0.5 + 0.3 reaches it


def test_min_p_drops_tokens_below_a_fraction_of_the_top_probability():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    tokens = sample(logits, [SamplingParams(min_p=0.35)] * 2000).sampled_token_ids
    assert set(tokens) == {0, 1}  # threshold 0.35 * 0.5 = 0.175


def test_penalties_match_a_hand_computation():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0, -2.0], [2.0, -1.0, 0.5, 3.0, -2.0]])
    params = SamplingParams(repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25)
    processed = process_logits(
        logits, metadata([params, params], prompts=[[0, 1], [0]], outputs=[[1, 3, 3], []])
    )
    # token 0: prompt, positive -> 2/2; 1: seen, negative -> -1*2, minus 0.5*1 and 0.25;
    # 2: unseen; 3: output twice, positive -> 3/2 - 0.5*2 - 0.25; 4: unseen.
    assert processed[0].tolist() == [1.0, -2.75, 0.5, 0.25, -2.0]
    # second row: only token 0 (prompt) is seen; padding must not count as token 0 twice.
    assert processed[1].tolist() == [1.0, -1.0, 0.5, 3.0, -2.0]
    assert logits[0, 0] == 2.0  # the caller's tensor is untouched


def test_presence_and_frequency_ignore_the_prompt():
    logits = torch.zeros(1, 4)
    params = SamplingParams(frequency_penalty=1.0, presence_penalty=0.5)
    processed = process_logits(logits, metadata([params], prompts=[[0, 0, 1]], outputs=[[2, 2, 2]]))
    assert processed[0].tolist() == [0.0, 0.0, -3.5, 0.0]


def test_repetition_penalty_below_one_encourages_repeats():
    logits = torch.tensor([[1.0, 1.25, -0.5]])
    processed = process_logits(logits, metadata([SamplingParams(repetition_penalty=0.5)], prompts=[[0, 2]]))
    assert processed[0].tolist() == [2.0, 1.25, -0.25]


def test_logit_bias_forces_a_token():
    logits = random_logits(8)
    forced = 5
    for temperature in (0.0, 1.0):
        params = SamplingParams(temperature=temperature, logit_bias={forced: 100})
        assert sample(logits, [params] * 8).sampled_token_ids == [forced] * 8
    ban_argmax = SamplingParams(temperature=0.0, logit_bias={int(t): -100 for t in logits.argmax(-1)})
    banned = sample(logits, [ban_argmax] * 8)
    assert all(t != a for t, a in zip(banned.sampled_token_ids, logits.argmax(-1).tolist()))


def test_min_tokens_blocks_eos_and_stop_tokens_until_reached():
    eos, stop = 3, 7
    logits = torch.zeros(1, VOCAB)
    logits[0, eos], logits[0, stop] = 10.0, 9.0
    params = SamplingParams(temperature=0.0, min_tokens=2, stop_token_ids=[stop])
    assert sample(logits, [params], outputs=[[1]], eos=[eos]).sampled_token_ids != [eos]
    assert sample(logits, [params], outputs=[[1]], eos=[eos]).sampled_token_ids != [stop]
    assert sample(logits, [params], outputs=[[1, 1]], eos=[eos]).sampled_token_ids == [eos]


def run_seeded(steps, row, others, position):
    """Tokens of `row` over several steps when placed at `position` among `others`."""
    target = SamplingParams(temperature=0.8, top_p=0.95, top_k=20, seed=1234)
    generator = make_generator(1234, 0)
    other_gens = [make_generator(p.seed, 0) for p in others]
    sampler = Sampler(seed=position)  # the shared stream differs from run to run
    tokens = []
    for step in range(steps):
        logits = random_logits(len(others) + 1, seed=100 + step)
        logits[position] = row[step]
        params = others[:position] + [target] + others[position:]
        gens = other_gens[:position] + [generator] + other_gens[position:]
        out = sampler(logits, metadata(params, generators=gens))
        tokens.append(out.sampled_token_ids[position])
    return tokens


def test_seeded_sampling_ignores_the_rest_of_the_batch():
    steps = 8
    row = [random_logits(1, seed=7)[0] / 3] * steps  # the same logits at every step
    alone = run_seeded(steps, row, [], 0)
    assert len(set(alone)) > 1  # really drawn from the row's stream, not the argmax every step
    mixes = [
        [SamplingParams()] * 3,
        [SamplingParams(temperature=0.0), SamplingParams(seed=99, top_k=5), SamplingParams(min_p=0.2)],
        [SamplingParams(seed=1234)] * 5 + [SamplingParams(presence_penalty=1.0, logprobs=2)],
    ]
    for others in mixes:
        for position in (0, len(others) // 2, len(others)):
            assert run_seeded(steps, row, others, position) == alone


def test_sequences_of_one_seeded_request_use_distinct_streams():
    assert make_generator(None, 0) is None
    draws = [make_generator(5, i).initial_seed() for i in range(4)]
    assert draws[0] == 5 and len(set(draws)) == 4
    assert make_generator(5, 1).initial_seed() == make_generator(5, 1).initial_seed()
    assert make_generator(5, 1).initial_seed() != make_generator(6, 0).initial_seed()
    assert make_generator(-3, 0) is not None  # negative seeds are accepted, as by torch


def test_different_seeds_give_different_tokens():
    logits = torch.zeros(1, VOCAB)
    runs = []
    for seed in (1, 2, 1):
        params, generator = [SamplingParams(seed=seed)], make_generator(seed, 0)
        sampler = Sampler(seed=0)
        step = metadata(params, generators=[generator])
        runs.append([sampler(logits, step).sampled_token_ids[0] for _ in range(12)])
    assert runs[0] == runs[2] and runs[0] != runs[1]


def test_seeded_row_without_generator_is_refused():
    with pytest.raises(ValueError, match="make_generator"):
        metadata([SamplingParams(seed=1)])


def test_logprobs_are_raw_log_softmax_with_ranks():
    logits = random_logits(3)
    raw = torch.log_softmax(logits, dim=-1)
    order = raw.argsort(dim=-1, descending=True)
    forced = int(order[0, 4])  # the 5th most likely token of row 0
    params = [
        SamplingParams(temperature=0.0, logit_bias={forced: 100}, logprobs=3, repetition_penalty=1.5),
        SamplingParams(temperature=0.7, logprobs=0),
        SamplingParams(),
    ]
    out = sample(logits, params)
    assert out.sampled_token_ids[0] == forced
    row0 = out.logprobs[0]
    assert list(row0)[0] == forced and len(row0) == 4
    assert row0[forced].rank == 5
    assert row0[forced].logprob == pytest.approx(raw[0, forced].item(), abs=1e-6)
    for rank in (1, 2, 3):
        token = int(order[0, rank - 1])
        assert row0[token].rank == rank
        assert row0[token].logprob == pytest.approx(raw[0, token].item(), abs=1e-6)
    sampled1 = out.sampled_token_ids[1]
    assert list(out.logprobs[1]) == [sampled1]
    assert out.logprobs[1][sampled1].rank == 1 + int((raw[1] > raw[1, sampled1]).sum())
    assert out.logprobs[2] is None


def test_prompt_logprobs():
    logits = random_logits(4)
    targets = [3, 9, 0, 31]
    dicts = compute_prompt_logprobs(logits, targets, num_logprobs=2)
    raw = torch.log_softmax(logits, dim=-1)
    assert len(dicts) == 4
    for i, token in enumerate(targets):
        assert dicts[i][token].logprob == pytest.approx(raw[i, token].item(), abs=1e-6)
        assert dicts[i][token].rank == 1 + int((raw[i] > raw[i, token]).sum())
        assert len(dicts[i]) in (2, 3)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.5])
def test_temperature_sampling_follows_the_distribution(temperature):
    base = torch.tensor([1.0, 0.5, 0.0, -0.5, -1.0])
    num_draws = 6000
    tokens = sample(base.repeat(num_draws, 1), [SamplingParams(temperature=temperature)] * num_draws)
    counts = torch.bincount(torch.tensor(tokens.sampled_token_ids), minlength=5).double()
    expected = torch.softmax(base.double() / temperature, dim=0) * num_draws
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    # 4 degrees of freedom: the 99.9th percentile is 18.5; a wrong temperature gives hundreds.
    assert chi_square < 18.5, (counts.tolist(), expected.tolist())
    assert math.isfinite(chi_square)
