"""make bench's report: the table's ratios come from the figures the benchmarks wrote, and the plots are written."""
from __future__ import annotations

from benchmarks.report import plot, table


def level(concurrency: int, throughput: float, ttft: float, tpot: float) -> dict:
    return {"concurrency": concurrency, "output_throughput": throughput, "median_ttft_ms": ttft,
            "median_tpot_ms": tpot, "p99_tpot_ms": 2 * tpot, "p99_itl_ms": 3 * tpot}


def fp8_entry(b1: float, b32: float, decoder_mb: float) -> dict:
    return {"decode_tok_s_batch1": b1, "decode_tok_s_batch32": b32, "weights_file_bytes": 2 * decoder_mb * 1e6,
            "decoder_weight_bytes": decoder_mb * 1e6, "resident_weight_bytes": decoder_mb * 1e6}


RESULTS = {
    "date": "2026-12-04T00:00:00", "cpus": 2, "machine": "x86_64",
    "models": {"tiny": {
        "offline": {"ours_compiled": {"tokens_per_s": 300.0}, "ours_eager": {"tokens_per_s": 200.0},
                    "transformers": {"tokens_per_s": 150.0}, "vllm": {"tokens_per_s": 600.0}},
        "cold_start_s": {"ours": 1.5, "transformers": 3.0, "vllm": 60.0},
        "compile": {
            "build": {"wall_s": 80.0, "num_compiled": 2, "per_bucket_s": {"decode_b1_m16": 40.0, "prefill": 40.0}},
            "size": {"artifact_mb": 17.0, "weights_file_mb": 4.0, "graphs_mb": 13.0, "checkpoint_weights_mb": 7.0},
            "memory": {"after_generate_mb": {"VmRSS": 290}, "after_imports_mb": {"VmRSS": 240}, "weights_mb": 4.0,
                       "kv_cache_mb": 16.0},
            "cold_start": {"runs_s": [1.5, 1.4, 1.6]}, "throughput": {"same_tokens": True},
            "single_stream": {"compiled": {"tokens_per_s": 90.0}, "eager": {"tokens_per_s": 60.0}}},
        "fp8": {"threads": 2, "results": {"bf16": fp8_entry(10.0, 100.0, 200.0), "fp8": fp8_entry(12.5, 90.0, 100.0)}},
        "serving": {"ours": {"results": [level(1, 100.0, 10.0, 5.0)]}, "vllm": {"results": [level(1, 200.0, 20.0, 4.0)]}},
    }},
}


def test_table_reports_each_ratio_against_its_peer():
    text = table(RESULTS)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ")}
    assert rows["offline output tokens/s"][4:] == ["1.50x", "2.00x", "0.50x"]   # vs eager, transformers, vLLM
    assert rows["one sequence, output tokens/s"][4] == "1.50x"
    assert rows["cold start to first token, s"][5:] == ["2.00x sooner", "40.00x sooner"]
    assert rows["fp8"][5:] == ["1.25x", "0.90x", "0.50x"]
    assert rows["ratio ours/vLLM"] == ["1", "0.50x", "0.50x", "1.25x", "1.25x"]
    assert "80.0 s for 2 graphs" in text and "weights 4.0 MB + graphs 13.0 MB" in text


def test_plots_are_written(tmp_path):
    paths = plot(RESULTS, tmp_path / "run")
    assert sorted(p.name for p in paths) == ["run_cold_start.png", "run_serving_tiny.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
