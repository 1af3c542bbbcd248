"""The artifact contract: what the manifest records, one copy of the weights, and every load-time fault
as one clear sentence (never a crash, never a silent rebuild)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

import runtime
from compile.artifact_writer import write_weights
from compile.models.config import ModelConfig
from compile.models.llama import LlamaForCausalLM
from runtime.artifact import SCHEMA_VERSION, Manifest, check_files, read_manifest
from runtime.model_inputs import StepRow, build_model_inputs
from runtime.runner import Launch


@pytest.fixture
def artifact(tiny_artifact, tmp_path):
    """A private copy of the session's artifact, free to damage."""
    return shutil.copytree(tiny_artifact, tmp_path / "artifact")


def edit_manifest(path, change) -> None:
    raw = json.loads((path / "manifest.json").read_text())
    change(raw)
    (path / "manifest.json").write_text(json.dumps(raw))


def test_manifest_records_the_contract(tiny_artifact):
    manifest = read_manifest(tiny_artifact)
    assert manifest.schema_version == SCHEMA_VERSION
    assert Manifest.from_dict(json.loads(manifest.to_json())) == manifest
    assert manifest.source.architecture == "LlamaForCausalLM" and len(manifest.source.config_sha256) == 64
    assert manifest.target == "cpu" and manifest.dtype == "float32"
    assert {"torch_version", "platform", "machine", "cpu_isa", "march"} <= set(manifest.fingerprint)
    assert manifest.fingerprint["march"] != "native"
    assert (manifest.kv_cache.block_size, manifest.kv_cache.num_layers, manifest.kv_cache.head_dim) == (16, 2, 16)
    assert (manifest.max_model_len, manifest.max_num_seqs, manifest.max_num_batched_tokens) == (256, 4, 64)
    assert sorted(e.bucket.name for e in manifest.buckets) == \
        ["decode_b1_m16", "decode_b4_m16", "prefill_b1_q32_m16", "prefill_b2_q32_m16"]
    assert all(len(e.sha256) == 64 and len(e.key) == 64 for e in manifest.buckets)
    assert manifest.generation.eos_token_ids and "tokenizer.json" in manifest.tokenizer.files
    report = json.loads((tiny_artifact / "report.json").read_text())
    assert report["num_compiled"] == 4 and all(r["compile_s"] > 0 for r in report["buckets"])


def test_weights_file_holds_every_tensor_once(tiny_artifact):
    manifest = read_manifest(tiny_artifact)
    with safe_open(str(tiny_artifact / "weights.safetensors"), framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    assert "inv_freq" in tensors and "lm_head.weight" in tensors and manifest.weights.lm_head == "lm_head.weight"
    payload = sum(t.nbytes for t in tensors.values())
    assert payload < manifest.weights.size_bytes < payload + 16_384   # the data plus a small JSON header


def test_tied_embeddings_are_stored_once_under_an_alias(tmp_path):
    cfg = ModelConfig(architecture="LlamaForCausalLM", vocab_size=128, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                      rms_norm_eps=1e-6, max_position_embeddings=64, tie_word_embeddings=True)
    entry = write_weights(LlamaForCausalLM(cfg), tmp_path)
    assert entry.aliases == {"lm_head.weight": "model.embed_tokens.weight"}
    assert entry.lm_head == "model.embed_tokens.weight" and entry.stored_name("lm_head.weight") == entry.lm_head
    with safe_open(str(tmp_path / entry.file), framework="pt") as f:
        assert "lm_head.weight" not in f.keys() and "model.embed_tokens.weight" in f.keys()


def flip_byte(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


FAULTS = {
    "missing graph": (lambda a: (a / "graphs/decode_b1_m16.pt2").unlink(), r"decode_b1_m16.pt2 is missing"),
    "damaged graph": (lambda a: flip_byte(a / "graphs/decode_b4_m16.pt2", 5000), r"does not match its sha256"),
    "truncated weights": (lambda a: (a / "weights.safetensors").write_bytes(
        (a / "weights.safetensors").read_bytes()[:-4]), r"weights.safetensors does not match"),
    "missing tokenizer": (lambda a: (a / "tokenizer/tokenizer.json").unlink(), r"tokenizer.json is missing"),
    "missing manifest": (lambda a: (a / "manifest.json").unlink(), r"is neither an artifact"),
    "unknown schema": (lambda a: edit_manifest(a, lambda m: m.update(schema_version=99)), r"schema_version 99"),
    "malformed manifest": (lambda a: edit_manifest(a, lambda m: m.pop("weights")), r"'weights' section"),
    "other torch": (lambda a: edit_manifest(a, lambda m: m["fingerprint"].update(torch_version="2.0.1")),
                    r"built with torch 2.0.1"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_load_faults_are_one_clear_sentence(artifact, fault):
    damage, message = FAULTS[fault]
    damage(artifact)
    with pytest.raises(ValueError, match=message) as err:
        runtime.load(artifact)
    assert "\n" not in str(err.value) and "gaudi-compile build" in str(err.value)


def test_graphs_for_an_instruction_set_this_cpu_lacks_are_refused(artifact):
    lacking = [isa for isa, has in (("avx512", torch.cpu._is_avx512_supported),
                                    ("avx512 avx512_vnni amx_tile", torch.cpu._is_amx_tile_supported)) if not has()]
    if not lacking:
        pytest.skip("this CPU has every instruction set inductor targets")
    edit_manifest(artifact, lambda m: m["fingerprint"].update(cpu_isa=lacking[0]))
    with pytest.raises(ValueError, match="which this CPU lacks; rebuild"):
        runtime.load(artifact)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_cuda_artifact_on_a_cpu_machine_is_refused(artifact):
    edit_manifest(artifact, lambda m: m.update(target="cuda"))
    with pytest.raises(ValueError, match="built for a CUDA GPU and this machine has none"):
        runtime.load(artifact)


def test_weights_damaged_inside_their_data_are_found_by_a_deep_check(artifact):
    flip_byte(artifact / "weights.safetensors", (artifact / "weights.safetensors").stat().st_size - 100)
    manifest = read_manifest(artifact)
    check_files(artifact, manifest)                       # the fast load-time check looks at size and header
    with pytest.raises(ValueError, match="weights.safetensors does not match its sha256"):
        check_files(artifact, manifest, deep=True)


def test_inputs_that_do_not_fit_the_graph_raise_instead_of_crashing(tiny_artifact):
    executor = runtime.load(tiny_artifact).runner.executor
    rows = [StepRow([5], 3, [1]), StepRow([6], 3, [2])]
    inputs = build_model_inputs(rows, 16, 2, 1, 16)       # batch 2 into the batch-1 graph
    kv_cache = torch.zeros(2, 2, 8, 16, 2, 16)
    with pytest.raises(RuntimeError, match="decode_b1_m16 input input_ids"):
        executor.forward(inputs, Launch([0, 1], rows, (1, 1, 16), "decode_b1_m16"), kv_cache)
    with pytest.raises(RuntimeError, match="input kv_cache"):
        one = build_model_inputs(rows[:1], 16, 1, 1, 16)
        executor.forward(one, Launch([0], rows[:1], (1, 1, 16), "decode_b1_m16"), kv_cache.to(torch.bfloat16))
