"""benchmarks/serving.py measures a live server the way `vllm bench serve` does."""
from __future__ import annotations

import json

from benchmarks.serving import main as bench_serving
from tests.server.conftest import MODEL_NAME


def test_serving_benchmark_measures_every_concurrency(server, tmp_path, capsys):
    out = tmp_path / "serving.json"
    report = bench_serving(["--base-url", server.base_url, "--model", MODEL_NAME, "--concurrency", "1,4",
                            "--num-prompts", "4", "--input-len", "8", "--output-len", "5",
                            "--output-json", str(out)])
    assert json.loads(out.read_text()) == report
    assert [r["concurrency"] for r in report["results"]] == [1, 4]
    for r in report["results"]:
        assert (r["completed"], r["failed"]) == (4, 0)
        assert (r["total_input_tokens"], r["total_output_tokens"]) == (4 * 8, 4 * 5)  # exact lengths
        assert 0 < r["median_ttft_ms"] <= r["p99_ttft_ms"] and r["mean_tpot_ms"] > 0 and r["mean_itl_ms"] > 0
        assert r["output_throughput"] > 0 and r["request_throughput"] > 0
    table = capsys.readouterr().out
    assert "TTFT ms" in table and len([ln for ln in table.splitlines() if ln.strip().startswith(("1 ", "4 "))]) == 2
