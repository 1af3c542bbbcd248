"""An FP8 artifact (e4m3 weights and KV cache) built through gaudi-compile, then used the ways a user would:
LLM.generate, gaudi-run generate, the OpenAI server app, gaudi-compile inspect; and bad calibration files."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file

from cli.compile_cli import main as compile_main
from cli.run_cli import main as run_main
from runtime import LLM, SamplingParams

PROMPT = "The old lighthouse keeper"
GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)


@pytest.fixture(scope="module")
def fp8_artifact(tiny_checkpoint, tmp_path_factory):
    """tiny_checkpoint in float32 with FP8 weights and an FP8 KV cache: prefill 1x32 and decode batch 1."""
    out = tmp_path_factory.mktemp("fp8") / "tiny-fp8"
    result = CliRunner().invoke(compile_main, [
        "build", str(tiny_checkpoint), "-o", str(out), "--dtype", "float32", "--max-model-len", "256",
        "--prefill-buckets", "1x32", "--decode-buckets", "1", "--decode-context-blocks", "16",
        "--quant", "fp8", "--kv-cache-dtype", "fp8", "--calib-samples", "4"])
    assert result.exit_code == 0, result.output
    assert "FP8 quality: KL mean" in result.stdout
    return out


@pytest.fixture(scope="module")
def llm(fp8_artifact):
    return LLM(model=str(fp8_artifact))


def test_fp8_artifact_generates_what_the_eager_fp8_model_does(fp8_artifact, tiny_checkpoint, llm):
    from compile.eager_runs import greedy_continuation
    from compile.models.loader import load_model
    from compile.quantize import restore_quantized

    out = llm.generate(PROMPT, GREEDY)[0]
    eager = load_model(tiny_checkpoint, "float32")
    restore_quantized(eager, load_file(str(fp8_artifact / "weights.safetensors")), "cpu")
    assert out.outputs[0].token_ids == greedy_continuation(eager, out.prompt_token_ids, GREEDY.max_tokens)
    assert llm.llm_engine.runner.kv_cache.dtype == torch.float8_e4m3fn


def test_weights_file_and_manifest_describe_the_fp8_tensors(fp8_artifact):
    manifest = json.loads((fp8_artifact / "manifest.json").read_text())
    quant, kv = manifest["quantization"], manifest["kv_cache"]
    assert quant["scheme"] == "fp8" and kv["dtype"] == "float8_e4m3fn"
    with safe_open(str(fp8_artifact / "weights.safetensors"), framework="pt") as f:
        names = quant["weights"]["tensors"]
        for module in quant["weights"]["modules"]:
            assert f.get_tensor(names["weight"].format(module=module)).dtype == torch.float8_e4m3fn
            assert f.get_tensor(names["weight_scale"].format(module=module)).dtype == torch.float32
            assert f.get_tensor(names["input_scale"].format(module=module)).shape == ()
        for layer in range(kv_layers := quant["kv_cache"]["num_layers"]):
            assert f.get_tensor(quant["kv_cache"]["scales"]["k"].format(layer=layer)) > 0
        assert kv_layers == 2 and f.get_tensor("model.embed_tokens.weight").dtype == torch.float32


def test_gaudi_run_generate_streams_the_fp8_completion(fp8_artifact, llm):
    expected = llm.generate(PROMPT, SamplingParams(temperature=0, max_tokens=8))[0].outputs[0].text
    shown = CliRunner().invoke(run_main, ["generate", str(fp8_artifact), "--prompt", PROMPT, "--max-tokens", "8"])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == expected + "\n"


def test_the_server_app_serves_the_fp8_engine(fp8_artifact, llm):
    from fastapi.testclient import TestClient

    import runtime
    from runtime.server.app import create_app

    expected = llm.generate(PROMPT, SamplingParams(temperature=0, max_tokens=8))[0].outputs[0].text
    with TestClient(create_app(runtime.load(fp8_artifact), served_model_name="tiny-fp8")) as client:
        resp = client.post("/v1/completions", json={"model": "tiny-fp8", "prompt": PROMPT, "max_tokens": 8,
                                                    "temperature": 0})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["text"] == expected


def test_report_and_inspect_show_the_quality_figures(fp8_artifact):
    quality = json.loads((fp8_artifact / "report.json").read_text())["fp8_quality"]
    assert 0 <= quality["kl_mean"] <= quality["kl_max"] and 0 < quality["top1_agreement"] <= 1
    assert quality["perplexity_reference"] > 1 and quality["perplexity_fp8"] > 1
    assert len(quality["greedy_match"]["per_prompt"]) == 8 and quality["kv_cache_dtype"] == "float8_e4m3fn"
    shown = CliRunner().invoke(compile_main, ["inspect", str(fp8_artifact)])
    assert shown.exit_code == 0, shown.output
    assert f"quality    KL mean {quality['kl_mean']:.4f}" in shown.stdout
    assert "KV cache float8_e4m3fn" in shown.stdout and "14 decoder linears in float8_e4m3fn" in shown.stdout


@pytest.mark.parametrize("name, content, words", [
    ("missing.txt", None, "does not exist"), ("empty.txt", "\n\n", "is empty"),
    ("bad.jsonl", '{"prompt": "no text field"}\n', '"text"')])
def test_a_bad_calibration_file_is_one_line_and_exit_2(tiny_checkpoint, tmp_path, name, content, words):
    calib = tmp_path / name
    if content is not None:
        calib.write_text(content)
    result = CliRunner().invoke(compile_main, ["build", str(tiny_checkpoint), "-o", str(tmp_path / "out"),
                                               "--quant", "fp8", "--calib-data", str(calib)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "calibration file" in lines[0] and words in lines[0]
    assert "--calib-data" in lines[0] and not (tmp_path / "out").exists()
