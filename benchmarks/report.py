"""The benchmark report: a table with ratios to each peer, and PNG plots, from run_all's results."""
from __future__ import annotations

from pathlib import Path


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _fmt(v, spec: str = ".1f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def table(results: dict) -> str:
    """Markdown tables: cold start, offline throughput, serving, build and FP8, with ratios."""
    lines = [f"Benchmarks of {results['date']} on {results['cpus']} CPUs ({results['machine']})", ""]
    for size, r in results["models"].items():
        cold, off = r["cold_start_s"], r["offline"]
        ours = off["ours_compiled"]["tokens_per_s"]
        lines += [f"### {size}", "",
                  "| metric | ours (compiled) | ours (eager) | transformers | vLLM CPU | ours/transformers | ours/vLLM |",
                  "|---|---|---|---|---|---|---|"]
        t_tps = off.get("transformers", {}).get("tokens_per_s")
        v_tps = off.get("vllm", {}).get("tokens_per_s")
        lines.append(f"| offline output tokens/s | {_fmt(ours)} | {_fmt(off['ours_eager']['tokens_per_s'])} | "
                     f"{_fmt(t_tps)} | {_fmt(v_tps)} | {_ratio(ours, t_tps)} | {_ratio(ours, v_tps)} |")
        # for cold start lower is better: the ratio is peer / ours (how many times faster we start)
        lines.append(f"| cold start to first token, s | {_fmt(cold['ours'], '.2f')} | - | "
                     f"{_fmt(cold.get('transformers'), '.2f')} | {_fmt(cold.get('vllm'), '.2f')} | "
                     f"{_ratio(cold.get('transformers'), cold['ours'])} faster | "
                     f"{_ratio(cold.get('vllm'), cold['ours'])} faster |")
        rep = r["build"]["report"]
        lines += ["", f"build: {_fmt(rep.get('total_s'))} s for {len(rep.get('buckets', []))} buckets; artifact "
                  f"{r['build']['artifact_bytes'] / 2**20:.1f} MiB, of which weights "
                  f"{r['build']['weights_bytes'] / 2**20:.1f} MiB"]
        if "fp8" in r:
            lines += ["", "FP8 vs bf16: " + ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in r["fp8"].items()
                                                  if isinstance(v, (int, float)))]
        if "serving" in r:
            lines += ["", "| serving | concurrency | out tok/s | TTFT p50 ms | TPOT p50 ms | ITL p99 ms |",
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
