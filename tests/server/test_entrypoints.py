"""The serve command lines: vLLM's flag names, and one-line errors with exit code 2."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.run_cli import main as gaudi_run
from runtime.entrypoints.openai.api_server import main as api_server
from runtime.server.options import configs_from_flags


@pytest.mark.parametrize("argv, words", [
    (["--model", "m", "--not-a-flag"], "unrecognized argument --not-a-flag"),
    (["--model", "m", "--enable-lora"], "unrecognized argument --enable-lora"),
    (["--model", "m", "--port", "eighty"], "argument --port: invalid int value"),
    (["--model", "m", "--tensor-parallel-size", "2"], "--tensor-parallel-size 2 is not supported"),
    (["--model", "m", "-tp", "4"], "--tensor-parallel-size 4 is not supported"),
    (["--model", "m", "--quantization", "fp8"], "fixed when the artifact is built"),
    (["--model", "m", "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization must be in (0, 1]"),
    (["--model", "m", "--max-num-seqs", "0"], "--max-num-seqs must be a positive integer"),
    (["--model", "m", "--uvicorn-log-level", "loud"], "--uvicorn-log-level"),
    (["--port", "8000"], "--model"),
])
def test_api_server_rejects_bad_flags_in_one_line(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        api_server(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err


def test_api_server_reports_a_missing_model_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        api_server(["--model", str(tmp_path / "missing"), "--port", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_vllm_flags_map_onto_the_configs():
    server, engine = configs_from_flags("artifacts/tiny", {
        "host": "127.0.0.1", "port": 9000, "api_key": "k", "served_model_name": ["a", "b"],
        "max_num_seqs": 8, "max_model_len": 128, "block_size": 32, "max_num_batched_tokens": 512,
        "dtype": "half", "seed": 3, "enable_prefix_caching": False, "num_gpu_blocks_override": 100,
        "tensor_parallel_size": 1, "gpu_memory_utilization": 0.9, "enforce_eager": True,
        "trust_remote_code": True, "kv_cache_dtype": "auto"})
    assert (server.host, server.port, server.api_key, server.served_names) == ("127.0.0.1", 9000, "k", ["a", "b"])
    assert (engine.max_num_seqs, engine.max_model_len, engine.block_size, engine.max_num_batched_tokens) == \
        (8, 128, 32, 512)
    assert (engine.dtype, engine.seed, engine.enable_prefix_caching, engine.num_kv_blocks) == \
        ("float16", 3, False, 100)


def test_gaudi_run_serve_takes_the_same_flags():
    runner = CliRunner()
    help_text = runner.invoke(gaudi_run, ["serve", "--help"]).output
    for flag in ("--host", "--port", "--api-key", "--served-model-name", "--max-num-seqs", "--max-model-len",
                 "--chat-template", "--uvicorn-log-level", "--tensor-parallel-size", "--gpu-memory-utilization"):
        assert flag in help_text
    rejected = runner.invoke(gaudi_run, ["serve", "artifacts/x", "--tensor-parallel-size", "2"])
    assert rejected.exit_code == 2 and "--tensor-parallel-size 2 is not supported" in rejected.output
    unknown = runner.invoke(gaudi_run, ["serve", "artifacts/x", "--no-such-flag"])
    assert unknown.exit_code == 2 and "--no-such-flag" in unknown.output
