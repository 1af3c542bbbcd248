"""gaudi-compile build/inspect/verify as a user runs them, on a second family (Qwen2: tied embeddings, qkv bias),
and every fault as exit code 2 with one line and no traceback."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import runtime
from cli.compile_cli import main as compile_main
from cli.run_cli import main as run_main
from runtime import SamplingParams
from tests.factory import make_checkpoint

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def qwen2_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("qwen2"), "qwen2", max_position_embeddings=128)


@pytest.fixture(scope="module")
def qwen2_artifact(qwen2_checkpoint, tmp_path_factory):
    """Built through the CLI with two graphs: prefill 1x32 and decode batch 2, both over the full context."""
    out = tmp_path_factory.mktemp("built") / "qwen2"
    result = CliRunner().invoke(compile_main, [
        "build", str(qwen2_checkpoint), "-o", str(out), "--dtype", "float32", "--max-model-len", "128",
        "--prefill-buckets", "1x32", "--decode-buckets", "2", "--context-blocks", "8"])
    assert result.exit_code == 0, result.output
    assert f"built {out}: 2 graphs (2 compiled, 0 reused)" in result.stdout
    return out


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def test_greedy_generation_equals_eager_for_a_second_family(qwen2_artifact, qwen2_checkpoint):
    compiled = runtime.load(qwen2_artifact)
    eager = runtime.load(qwen2_checkpoint, dtype="float32", max_model_len=128, enforce_eager=True)
    prompts = ["hello", "the blue sky over the model " * 6, "a cat", "fast slow code"]   # 3 decode rows: split 2 + 1
    params = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True)
    assert [o.outputs[0].token_ids for o in compiled.generate(prompts, params)] == \
        [o.outputs[0].token_ids for o in eager.generate(prompts, params)]
    assert compiled.runner.executor.manifest.weights.aliases == {"lm_head.weight": "model.embed_tokens.weight"}
    shown = CliRunner().invoke(run_main, ["generate", str(qwen2_artifact), "--prompt", "hello", "--max-tokens", "16"])
    assert shown.exit_code == 0, shown.output
    expected = eager.generate("hello", SamplingParams(temperature=0, max_tokens=16))[0].outputs[0].text
    assert shown.stdout == expected + "\n"


def test_inspect_tells_what_it_is_and_where_it_runs(qwen2_artifact):
    text = CliRunner().invoke(compile_main, ["inspect", str(qwen2_artifact)])
    assert text.exit_code == 0, text.output
    assert "Qwen2ForCausalLM" in text.stdout and "runs here  yes" in text.stdout
    assert "prefill_b1_q32_m8" in text.stdout and "decode_b2_m8" in text.stdout
    raw = json.loads(CliRunner().invoke(compile_main, ["inspect", str(qwen2_artifact), "--json"]).stdout)
    assert raw["manifest"]["target"] == "cpu" and raw["report"]["num_compiled"] == 2 and raw["runs_here"] == "yes"


def test_verify_passes_then_catches_a_damaged_weight(qwen2_artifact, tmp_path):
    ok = CliRunner().invoke(compile_main, ["verify", str(qwen2_artifact)])
    assert ok.exit_code == 0 and ok.stdout.startswith("ok: ")
    copy = shutil.copytree(qwen2_artifact, tmp_path / "copy")
    weights = copy / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert "weights.safetensors does not match its sha256" in one_error_line(
        CliRunner().invoke(compile_main, ["verify", str(copy)]))


def damage(copy: Path, fault: str) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    if fault == "missing file":
        (copy / "graphs" / "decode_b2_m8.pt2").unlink()
    elif fault == "checksum":
        graph = copy / "graphs" / "decode_b2_m8.pt2"
        data = bytearray(graph.read_bytes())
        data[len(data) // 2] ^= 0xFF
        graph.write_bytes(bytes(data))
    elif fault == "schema":
        manifest["schema_version"] = 7
    elif fault == "fingerprint":
        manifest["fingerprint"]["machine"] = "sparc64"
    elif fault == "not an artifact":
        (copy / "manifest.json").unlink()
    if fault in ("schema", "fingerprint"):
        (copy / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("fault, words", [
    ("missing file", "is missing"), ("checksum", "does not match its sha256"), ("schema", "schema_version 7"),
    ("fingerprint", "machine architecture sparc64"), ("not an artifact", "neither an artifact")])
def test_run_faults_exit_2_with_one_line(qwen2_artifact, tmp_path, fault, words):
    copy = shutil.copytree(qwen2_artifact, tmp_path / "copy")
    damage(copy, fault)
    line = one_error_line(CliRunner().invoke(run_main, ["generate", str(copy), "--prompt", "hi"]))
    assert words in line
    if fault in ("missing file", "checksum", "schema"):     # verify checks files, not the machine
        assert words in one_error_line(CliRunner().invoke(compile_main, ["verify", str(copy)]))


def test_a_damaged_artifact_in_a_real_process_exits_2_without_a_traceback(qwen2_artifact, tmp_path):
    copy = shutil.copytree(qwen2_artifact, tmp_path / "copy")
    damage(copy, "checksum")
    done = subprocess.run([str(BIN / "gaudi-run"), "generate", str(copy), "--prompt", "hi"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "does not match its sha256" in done.stderr


def test_hpu_target_without_habana_is_one_clear_error(qwen2_checkpoint, tmp_path):
    # a fresh process: no test's fake habana_frameworks can leak in
    done = subprocess.run([str(BIN / "gaudi-compile"), "build", str(qwen2_checkpoint), "--target", "hpu",
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "habana_frameworks" in lines[0] and "--target cpu" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_target_without_a_gpu_is_one_clear_error(qwen2_checkpoint, tmp_path):
    line = one_error_line(CliRunner().invoke(compile_main, ["build", str(qwen2_checkpoint), "--target", "cuda",
                                                            "-o", str(tmp_path / "out")]))
    assert "needs a CUDA GPU" in line


def test_bad_bucket_flags_are_usage_errors(qwen2_checkpoint):
    result = CliRunner().invoke(compile_main, ["build", str(qwen2_checkpoint), "--prefill-buckets", "1by32"])
    assert result.exit_code == 2 and "BATCHxQUERY_LEN" in result.output
