"""The engine end to end on a tiny checkpoint: batching, sampling, stopping, preemption, prefix cache."""
from __future__ import annotations

import random

import pytest
import torch

from runtime import LLM, SamplingParams
from runtime.config import EngineOptions
from runtime.loading import load


@pytest.fixture(scope="module")
def llm(tiny_checkpoint):
    # enforce_eager: these tests are about the engine, and the eager model needs no build
    return LLM(model=str(tiny_checkpoint), dtype="float32", max_model_len=256, enforce_eager=True)


def word_prompts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = "the model of a cat runs over hello world data tokens fast slow code 猫 🙂 blue sky".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def texts(outputs) -> list[list[int]]:
    return [o.outputs[0].token_ids for o in outputs]


def test_offline_example_from_the_guide(llm, capsys):
    # the vLLM guide's example, unchanged but for the import line and the model path
    prompts = ["Hello, my name is", "The future of AI is"]
    sampling_params = SamplingParams(temperature=0.8, top_p=0.95)
    outputs = llm.generate(prompts, sampling_params)
    for output in outputs:
        prompt = output.prompt
        generated_text = output.outputs[0].text
        print(f"Prompt: {prompt!r}, Generated text: {generated_text!r}")
    assert [o.prompt for o in outputs] == prompts
    assert all(len(o.outputs[0].token_ids) >= 1 and o.finished for o in outputs)
    assert "Prompt: 'Hello, my name is'" in capsys.readouterr().out


def test_batched_greedy_equals_one_at_a_time(llm):
    prompts = word_prompts(64)
    rng = random.Random(1)
    params = [SamplingParams(temperature=0.0, max_tokens=rng.randint(1, 24), ignore_eos=rng.random() < 0.5,
                             repetition_penalty=rng.choice([1.0, 1.3]), presence_penalty=rng.choice([0.0, 0.5]))
              for _ in prompts]
    batched = llm.generate(prompts, params, use_tqdm=False)
    single = [llm.generate(p, sp, use_tqdm=False)[0] for p, sp in zip(prompts[:64], params[:64])]
    assert texts(batched) == texts(single)
    assert [o.outputs[0].text for o in batched] == [o.outputs[0].text for o in single]


def test_seeded_sampling_is_reproducible_across_batch_compositions(llm):
    target = SamplingParams(temperature=1.0, top_p=0.9, seed=1234, max_tokens=20, ignore_eos=True)
    alone = llm.generate("the cat", target, use_tqdm=False)[0].outputs[0].token_ids
    others = word_prompts(7, seed=5)
    mixed = llm.generate(others + ["the cat"], [SamplingParams(temperature=1.0, max_tokens=9)] * 7 + [target],
                         use_tqdm=False)
    assert mixed[-1].outputs[0].token_ids == alone
    different = llm.generate("the cat", SamplingParams(temperature=1.0, top_p=0.9, seed=99, max_tokens=20,
                                                       ignore_eos=True), use_tqdm=False)[0].outputs[0].token_ids
    assert different != alone


def test_stop_string_split_across_tokens(llm):
    full = llm.generate("hello world", SamplingParams(temperature=0, max_tokens=30, ignore_eos=True),
                        use_tqdm=False)[0].outputs[0]
    tok = llm.get_tokenizer()
    pieces = [tok.decode([t]) for t in full.token_ids]
    # a stop string made of the tail of one token's text and the head of the next one's
    i = next(i for i in range(3, len(pieces) - 1) if len(pieces[i]) >= 1 and len(pieces[i + 1]) >= 1)
    stop = pieces[i][-1:] + pieces[i + 1][:1]
    out = llm.generate("hello world", SamplingParams(temperature=0, max_tokens=30, ignore_eos=True, stop=[stop]),
                       use_tqdm=False)[0].outputs[0]
    assert out.finish_reason == "stop" and out.stop_reason == stop
    assert stop not in out.text and full.text.startswith(out.text)
    assert out.text == full.text[: full.text.find(stop)]
    kept = llm.generate("hello world", SamplingParams(temperature=0, max_tokens=30, ignore_eos=True, stop=[stop],
                                                      include_stop_str_in_output=True), use_tqdm=False)[0].outputs[0]
    assert kept.text == out.text + stop


def test_preemption_keeps_greedy_outputs(tiny_checkpoint, llm):
    prompts = word_prompts(12, seed=3)
    params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
    reference = texts(llm.generate(prompts, params, use_tqdm=False))
    # 16 usable blocks of 16 tokens cannot hold 12 sequences of up to ~80 tokens at once
    small = load(tiny_checkpoint, EngineOptions(dtype="float32", max_model_len=256, num_kv_blocks=17, enforce_eager=True))
    assert texts(small.generate(prompts, params)) == reference
    assert small.num_preemptions > 0


def test_prefix_cache_hits_change_nothing(tiny_checkpoint):
    engine = load(tiny_checkpoint, EngineOptions(dtype="float32", max_model_len=256, enforce_eager=True))
    shared = " ".join(["the blue sky over the model"] * 8)
    params = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    first = engine.generate([shared + " cat"], params)
    hits_before = engine.stats().prefix_cache_hits
    second = engine.generate([shared + " cat", shared + " dog"], params)
    assert engine.stats().prefix_cache_hits > hits_before
    cold = load(tiny_checkpoint, EngineOptions(dtype="float32", max_model_len=256, enable_prefix_caching=False,
                                                  enforce_eager=True))
    assert texts(second) == texts(cold.generate([shared + " cat", shared + " dog"], params))
    assert texts(first)[0] == texts(second)[0]


def test_n_completions(llm):
    out = llm.generate("the cat", SamplingParams(n=4, temperature=1.0, seed=7, max_tokens=8), use_tqdm=False)[0]
    assert [c.index for c in out.outputs] == [0, 1, 2, 3]
    assert len({tuple(c.token_ids) for c in out.outputs}) > 1


def test_logprobs_are_log_softmax_of_model_logits(tiny_checkpoint, llm):
    from compile.models.loader import load_model
    out = llm.generate("hello world", SamplingParams(temperature=0, max_tokens=5, logprobs=3, prompt_logprobs=2,
                                                     ignore_eos=True), use_tqdm=False)[0]
    model = load_model(tiny_checkpoint, "float32")
    import transformers
    ref = transformers.AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    ids = torch.tensor([out.prompt_token_ids + out.outputs[0].token_ids])
    with torch.no_grad():
        ref_lp = torch.log_softmax(ref(ids).logits[0].float(), -1)
    num_prompt = len(out.prompt_token_ids)
    comp = out.outputs[0]
    for k, (tok, lps) in enumerate(zip(comp.token_ids, comp.logprobs)):
        assert lps[tok].logprob == pytest.approx(ref_lp[num_prompt - 1 + k, tok].item(), abs=1e-4)
        assert lps[tok].rank == 1  # greedy picks the top token
        assert len(lps) == 3
    assert comp.cumulative_logprob == pytest.approx(sum(d[t].logprob for d, t in zip(comp.logprobs, comp.token_ids)))
    assert out.prompt_logprobs[0] is None and len(out.prompt_logprobs) == num_prompt
    for p in range(1, num_prompt):
        tok = out.prompt_token_ids[p]
        assert out.prompt_logprobs[p][tok].logprob == pytest.approx(ref_lp[p - 1, tok].item(), abs=1e-4)
    del model


@pytest.mark.parametrize("bad, field", [
    (dict(temperature=-1), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
    (dict(n=0), "n"), (dict(max_tokens=0), "max_tokens"), (dict(logprobs=21), "logprobs"),
    (dict(stop=[""]), "stop"), (dict(top_k=-2), "top_k"), (dict(min_p=2.0), "min_p"),
    (dict(repetition_penalty=0.0), "repetition_penalty"), (dict(presence_penalty=3.0), "presence_penalty"),
])
def test_invalid_parameters_name_the_parameter(bad, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**bad)


def test_prompt_that_cannot_fit_is_rejected_before_running(llm):
    engine = llm.llm_engine
    with pytest.raises(ValueError, match="maximum context length is 256"):
        llm.generate(["hi", "word " * 300], SamplingParams(max_tokens=4), use_tqdm=False)
    with pytest.raises(ValueError, match="maximum context length"):
        llm.generate("hi", SamplingParams(max_tokens=300), use_tqdm=False)
    with pytest.raises(ValueError, match="out of vocabulary"):
        llm.generate({"prompt_token_ids": [1, 10**6]}, SamplingParams(max_tokens=4), use_tqdm=False)
    assert not engine.has_unfinished_requests()
    assert llm.generate("hi", SamplingParams(max_tokens=2, temperature=0), use_tqdm=False)[0].finished


def test_chat_one_conversation_and_a_list(llm):
    conv = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"}]
    one = llm.chat(conv, SamplingParams(temperature=0, max_tokens=6), use_tqdm=False)
    two = llm.chat([conv, conv], SamplingParams(temperature=0, max_tokens=6), use_tqdm=False)
    assert len(one) == 1 and len(two) == 2
    assert two[0].outputs[0].token_ids == two[1].outputs[0].token_ids == one[0].outputs[0].token_ids
    assert one[0].prompt.startswith(llm.get_tokenizer().apply_chat_template(conv, add_generation_prompt=True)[:10])
