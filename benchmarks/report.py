"""The benchmark report: a table with ratios to each peer, and PNG plots, from run_all's results."""
from __future__ import annotations

from pathlib import Path


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _fmt(v, spec: str = ".1f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def _single_stream_row(single: dict | None) -> list[str]:
    if not single:
        return []
    c, e = single["compiled"]["tokens_per_s"], single["eager"]["tokens_per_s"]
    return [f"| one sequence, output tokens/s | {_fmt(c)} | {_fmt(e)} | - | - | {_ratio(c, e)} | - | - |"]


def table(results: dict) -> str:
    """Markdown tables per model: offline throughput and cold start with ratios, build facts, FP8, serving."""
    lines = [f"Benchmarks of {results['date']} on {results['cpus']} CPUs ({results['machine']})", ""]
    for size, r in results["models"].items():
        cold, off = r["cold_start_s"], r["offline"]
        ours, eager = off["ours_compiled"]["tokens_per_s"], off["ours_eager"]["tokens_per_s"]
        t_tps = off.get("transformers", {}).get("tokens_per_s")
        v_tps = off.get("vllm", {}).get("tokens_per_s")
        lines += [f"### {size}", "",
                  "| metric | ours (compiled) | ours (eager) | transformers | vLLM CPU | compiled/eager "
                  "| ours/transformers | ours/vLLM |",
                  "|---|---|---|---|---|---|---|---|",
                  f"| offline output tokens/s | {_fmt(ours)} | {_fmt(eager)} | {_fmt(t_tps)} | {_fmt(v_tps)} | "
                  f"{_ratio(ours, eager)} | {_ratio(ours, t_tps)} | {_ratio(ours, v_tps)} |",
                  *_single_stream_row(r.get("compile", {}).get("single_stream")),
                  # for cold start lower is better: the ratio is peer / ours (how many times sooner we answer)
                  f"| cold start to first token, s | {_fmt(cold['ours'], '.2f')} | - | "
                  f"{_fmt(cold.get('transformers'), '.2f')} | {_fmt(cold.get('vllm'), '.2f')} | - | "
                  f"{_ratio(cold.get('transformers'), cold['ours'])} sooner | "
                  f"{_ratio(cold.get('vllm'), cold['ours'])} sooner |", ""]
        if "compile" in r:
            c = r["compile"]
            b, sz, mem = c["build"], c["size"], c["memory"]
            lines += [f"- build: {_fmt(b['wall_s'])} s for {b['num_compiled']} graphs ("
                      + ", ".join(f"{k} {v} s" for k, v in b["per_bucket_s"].items()) + ")",
                      f"- artifact {_fmt(sz['artifact_mb'])} MB = weights {_fmt(sz['weights_file_mb'])} MB + graphs "
                      f"{_fmt(sz['graphs_mb'])} MB (checkpoint weights {_fmt(sz['checkpoint_weights_mb'])} MB)",
                      f"- resident memory after load + generate: {mem['after_generate_mb']['VmRSS']} MB "
                      f"(torch + runtime alone {mem['after_imports_mb']['VmRSS']} MB, weights "
                      f"{_fmt(mem['weights_mb'], '.0f')} MB, KV cache {_fmt(mem['kv_cache_mb'], '.0f')} MB)",
                      f"- cold start runs: {c['cold_start']['runs_s']} s; compiled and eager greedy tokens identical: "
                      f"{c['throughput']['same_tokens']}", ""]
        if "fp8" in r:
            fp8 = r["fp8"]["results"]
            base = fp8["bf16"]
            lines += [f"FP8 vs bf16 ({r['fp8']['threads']} threads, decode tokens/s, median of runs):", "",
                      "| build | decode b=1 | decode b=32 | weights file MB | decoder weights MB | resident weights MB "
                      "| b=1 vs bf16 | b=32 vs bf16 | decoder weights vs bf16 |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for name, f in fp8.items():
                lines.append(
                    f"| {name} | {_fmt(f['decode_tok_s_batch1'])} | {_fmt(f['decode_tok_s_batch32'])} | "
                    f"{_fmt(f['weights_file_bytes'] / 1e6)} | {_fmt(f['decoder_weight_bytes'] / 1e6)} | "
                    f"{_fmt(f['resident_weight_bytes'] / 1e6)} | "
                    f"{_ratio(f['decode_tok_s_batch1'], base['decode_tok_s_batch1'])} | "
                    f"{_ratio(f['decode_tok_s_batch32'], base['decode_tok_s_batch32'])} | "
                    f"{_ratio(f['decoder_weight_bytes'], base['decoder_weight_bytes'])} |")
            lines.append("")
        if "serving" in r:
            lines += ["| serving | concurrency | out tok/s | TTFT p50 ms | TPOT p50 ms | ITL p99 ms |",
                      "|---|---|---|---|---|---|"]
            for name, rep in r["serving"].items():
                for level in rep["results"]:
                    lines.append(f"| {name} | {level['concurrency']} | {_fmt(level['output_throughput'])} | "
                                 f"{_fmt(level['median_ttft_ms'])} | {_fmt(level['median_tpot_ms'])} | "
                                 f"{_fmt(level['p99_itl_ms'])} |")
            if {"ours", "vllm"} <= r["serving"].keys():
                for a, b in zip(r["serving"]["ours"]["results"], r["serving"]["vllm"]["results"]):
                    lines.append(f"| ratio ours/vLLM | {a['concurrency']} | "
                                 f"{_ratio(a['output_throughput'], b['output_throughput'])} | "
                                 f"{_ratio(a['median_ttft_ms'], b['median_ttft_ms'])} | "
                                 f"{_ratio(a['median_tpot_ms'], b['median_tpot_ms'])} | "
                                 f"{_ratio(a['p99_itl_ms'], b['p99_itl_ms'])} |")
            lines.append("")
    return "\n".join(lines)


def plot(results: dict, prefix: Path) -> list[Path]:
    """Throughput vs concurrency, latency percentiles, cold start bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    sizes = list(results["models"])
    fig, ax = plt.subplots(figsize=(6, 4))
    engines = ["ours", "transformers", "vllm"]
    width = 0.8 / len(engines)
    for i, eng in enumerate(engines):
        vals = [results["models"][s]["cold_start_s"].get(eng, 0) for s in sizes]
        ax.bar([x + i * width for x in range(len(sizes))], vals, width, label=eng)
    ax.set_xticks([x + width for x in range(len(sizes))], sizes)
    ax.set_ylabel("seconds, new process to first token")
    ax.set_title("Cold start")
    ax.legend()
    written.append(_save(fig, prefix, "cold_start"))

    for size, r in results["models"].items():
        if "serving" not in r:
            continue
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for name, rep in r["serving"].items():
            conc = [lv["concurrency"] for lv in rep["results"]]
            ax1.plot(conc, [lv["output_throughput"] for lv in rep["results"]], marker="o", label=name)
            for pct, style in (("median", "-"), ("p99", "--")):
                ax2.plot(conc, [lv[f"{pct}_tpot_ms"] for lv in rep["results"]], style, marker="o",
                         label=f"{name} TPOT {pct}")
        ax1.set(xlabel="concurrency", ylabel="output tokens/s", title=f"Throughput vs concurrency ({size})")
        ax2.set(xlabel="concurrency", ylabel="ms per output token", title=f"Latency percentiles ({size})")
        ax1.legend()
        ax2.legend()
        written.append(_save(fig, prefix, f"serving_{size}"))
    return written


def _save(fig, prefix: Path, name: str) -> Path:
    path = Path(f"{prefix}_{name}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path
