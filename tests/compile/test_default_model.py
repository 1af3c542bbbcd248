"""The built-in default model: a checkpoint transformers and our runtime both load and agree on.

Built once per module at a much smaller shape than `tiny`, with a few training steps, so the
whole file runs in seconds; the shapes and step counts of the real sizes are checked on paper.
"""
from __future__ import annotations

import json

import pytest
import torch

from compile.default_model import STAMP_FILE, DefaultModelOptions, build_default_model, main
from compile.default_sizes import SIZES, ModelShape
from compile.default_training import TrainingConfig
from compile.models.loader import load_model
from runtime import LLM, SamplingParams
from runtime.tokenizer import Tokenizer

SMALL = ModelShape(vocab_size=640, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                   max_position_embeddings=256, tie_word_embeddings=False)
# enough steps at a high rate that next-token distributions are peaked: greedy parity is then not float noise
FAST = TrainingConfig(num_steps=0, batch_size=4, seq_len=64, learning_rate=1e-2, warmup_steps=2)
OPTIONS = DefaultModelOptions(size="tiny", train_steps=20, shape=SMALL, training=FAST, num_threads=1)
TEXT = 'The "for" statement iterates: for i in range(3):\n    print(i)  # café ünïcode 🐍'


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_default_model(tmp_path_factory.mktemp("default") / "tiny", OPTIONS).path


def hf_model(path):
    import transformers
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_checkpoint_loads_in_transformers_and_our_loader(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["vocab_size"] == SMALL.vocab_size
    ref = hf_model(checkpoint)
    ours = load_model(checkpoint, "float32")
    assert sum(p.numel() for p in ref.parameters()) == SMALL.num_parameters
    assert ours.config.num_key_value_heads == 2 and not ours.config.tie_word_embeddings
    generation = json.loads((checkpoint / "generation_config.json").read_text())
    tok = Tokenizer.from_dir(checkpoint)
    assert tok.convert_tokens_to_ids("<|eot_id|>") in generation["eos_token_id"]
    assert "<|end_of_text|>" in tok.convert_ids_to_tokens(generation["eos_token_id"])


def test_greedy_tokens_and_logprobs_equal_transformers(checkpoint):
    prompts = ['The "for" statement', "A function definition", "Tell me about lambdas."]
    llm = LLM(model=str(checkpoint), dtype="float32", max_model_len=256, enforce_eager=True)
    params = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True, logprobs=3)
    outputs = [o.outputs[0] for o in llm.generate(prompts, params, use_tqdm=False)]
    ref_model = hf_model(checkpoint)
    tok = llm.get_tokenizer()
    for prompt, out in zip(prompts, outputs):
        ids = torch.tensor([tok.encode(prompt)])
        with torch.no_grad():
            ref = ref_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                                     eos_token_id=None, pad_token_id=0, output_scores=True,
                                     return_dict_in_generate=True)
        assert list(out.token_ids) == ref.sequences[0, ids.shape[1]:].tolist(), f"{prompt!r}: greedy tokens differ"
        for step, (top, scores) in enumerate(zip(out.logprobs, ref.scores)):
            ref_logprobs = scores[0].log_softmax(-1)
            for token_id, logprob in top.items():
                assert abs(logprob.logprob - float(ref_logprobs[token_id])) < 1e-4, f"{prompt!r} step {step}"


def test_tokenizer_round_trips_and_matches_transformers(checkpoint):
    import transformers
    ours = Tokenizer.from_dir(checkpoint)
    ref = transformers.AutoTokenizer.from_pretrained(checkpoint)
    ids = ours.encode(TEXT)
    assert ids[0] == ours.convert_tokens_to_ids("<|begin_of_text|>")
    assert ids == ref(TEXT)["input_ids"]
    assert ours.decode(ids) == TEXT == ref.decode(ids, skip_special_tokens=True)
    assert ours.vocab_size == len(ref) == SMALL.vocab_size


def test_chat_template_renders_llama3_prompt(checkpoint):
    import transformers
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a lambda?"}]
    rendered = Tokenizer.from_dir(checkpoint).apply_chat_template(messages, add_generation_prompt=True)
    assert rendered == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                        "<|start_header_id|>user<|end_header_id|>\n\nWhat is a lambda?<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    ref = transformers.AutoTokenizer.from_pretrained(checkpoint)
    assert ref.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == rendered


def test_second_run_with_same_options_skips(checkpoint, caplog):
    before = {p.name: p.stat().st_mtime_ns for p in checkpoint.iterdir()}
    with caplog.at_level("INFO"):
        report = build_default_model(checkpoint, OPTIONS)
    assert report.skipped and not report.is_random
    assert "skipping" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in checkpoint.iterdir()} == before


def test_build_is_deterministic_and_other_options_rebuild(checkpoint, tmp_path):
    again = build_default_model(tmp_path / "again", OPTIONS).path
    assert (again / "model.safetensors").read_bytes() == (checkpoint / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_bytes() == (checkpoint / "tokenizer.json").read_bytes()
    random = build_default_model(again, DefaultModelOptions(size="tiny", train_steps=0, shape=SMALL, training=FAST))
    assert not random.skipped and random.is_random
    assert "RANDOM" in (again / "README.md").read_text()
    assert json.loads((again / STAMP_FILE).read_text())["weights"] == "random"
    assert not list(tmp_path.glob(".again.partial-*"))


def test_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["--out", str(tmp_path), "--train-steps", "0"]) == 2
    assert "not a default-model folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "m"), "--train-steps", "-1"]) == 2
    assert "train steps must be >= 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="num_heads"):
        ModelShape(vocab_size=512, hidden_size=64, num_layers=1, num_heads=3, num_kv_heads=1, intermediate_size=64,
                   max_position_embeddings=64, tie_word_embeddings=True)


@pytest.mark.parametrize("size, low, high", [("tiny", 1e6, 5e6), ("30m", 25e6, 35e6), ("200m", 180e6, 220e6)])
def test_size_names_match_parameter_counts(size, low, high):
    assert low <= SIZES[size].num_parameters <= high
    assert (DefaultModelOptions(size=size).steps > 0) == (size == "tiny")  # only tiny is trained by default
