"""FP8 vs bf16 on the same checkpoint, one run: decode tokens/s at batch 1 and 32, weights on disk and in memory.

    python benchmarks/fp8_bench.py [--model CKPT] [--work-dir artifacts/fp8-bench] [--new-tokens 32]

Without --model it writes the built-in ~200M model (`python -m compile.default_model --size 200m`, random
weights: this measures speed, not quality). It then builds two artifacts of it for the cpu target, bf16 and
bf16 + --quant fp8, with the same three graphs (prefill 1x16, decode batch 1 and 32 over a 64-token
context); a rebuild reuses graphs whose inputs did not change. Both engines are loaded in this process and
measured in turn, --repeats times (median): each batch of random 16-token prompts is prefilled, then the
steps that produce the next --new-tokens tokens of every sequence are timed.

Memory: the bytes of the decoder-layer tensors in each weights file (what the graphs read per token),
and the resident pages of each memory-mapped weights file after the runs (/proc/self/smaps), which also
counts the embedding rows and the LM head the runs touched.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT_TOKENS = 16
MAX_MODEL_LEN = 64
BATCHES = (1, 32)


def build_artifacts(model: Path, work: Path, builds: dict) -> dict[str, Path]:
    from compile.build import BuildOptions, build
    from compile.quantize import QuantConfig

    common = dict(model_dir=model, target="cpu", dtype="bfloat16", max_model_len=MAX_MODEL_LEN,
                  max_num_seqs=max(BATCHES), prefill_buckets=((1, PROMPT_TOKENS),), decode_buckets=BATCHES,
                  context_blocks=(MAX_MODEL_LEN // 16,))
    out = {}
    for name, quant in builds.items():
        quant = QuantConfig(**quant)
        start = time.perf_counter()
        result = build(BuildOptions(out_dir=work / name, quantization=quant, **common), progress=False)
        print(f"# built {name}: {result.report['num_compiled']} graphs compiled, {result.report['num_reused']} "
              f"reused, {time.perf_counter() - start:.0f} s", flush=True)
        out[name] = result.path
    return out


def decoder_bytes(weights_file: Path) -> int:
    from safetensors import safe_open

    total = 0
    with safe_open(str(weights_file), framework="pt") as f:
        for name in f.keys():
            if name.startswith("model.layers."):
                sliced = f.get_slice(name)
                numel = 1
                for size in sliced.get_shape():
                    numel *= size
                total += numel * {"F8_E4M3": 1, "BF16": 2, "F16": 2, "F32": 4}[sliced.get_dtype()]
    return total


def mapped_rss_bytes(path: Path) -> int:
    """Resident bytes of every mapping of `path` in this process."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:        # a mapping header line
            inside = fields[-1] == str(path.resolve())
        elif inside and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


def decode_tokens_per_s(engine, batch: int, new_tokens: int, seed: int) -> float:
    import torch

    from runtime import SamplingParams

    vocab = engine.info.vocab_size
    generator = torch.Generator().manual_seed(seed)
    params = SamplingParams(temperature=0, max_tokens=new_tokens + 1, ignore_eos=True)
    for i in range(batch):
        ids = torch.randint(10, min(vocab, 4000), (PROMPT_TOKENS,), generator=generator).tolist()
        engine.add_request(f"b{batch}-{seed}-{i}", None, ids, params)
    produced: dict[str, int] = {}
    while len(produced) < batch or min(produced.values()) < 1:          # prefill: every sequence has a token
        for out in engine.step():
            produced[out.request_id] = len(out.outputs[0].token_ids)
    start = time.perf_counter()
    while engine.has_unfinished_requests():
        engine.step()
    return batch * new_tokens / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint [default: the built-in 200m model]")
    parser.add_argument("--work-dir", type=Path, default=Path("artifacts/fp8-bench"))
    parser.add_argument("--new-tokens", type=int, default=32, help="decode tokens timed per sequence")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's]")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--skip-build", action="store_true", help="measure the artifacts already in --work-dir")
    parser.add_argument("--kv-fp8", action="store_true", help="also an FP8 build with an FP8 KV cache")
    args = parser.parse_args(argv)

    import torch

    import runtime

    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model
    if model is None:
        from compile.default_model import DefaultModelOptions, build_default_model

        model = build_default_model(args.work_dir / "default-200m", DefaultModelOptions(size="200m")).path
    builds = {"bf16": {}, "fp8": {"scheme": "fp8"}}
    if args.kv_fp8:
        builds["fp8-kv"] = {"scheme": "fp8", "kv_cache_dtype": "fp8"}
    if args.skip_build:
        artifacts = {name: args.work_dir / name for name in builds}
    else:
        artifacts = build_artifacts(model, args.work_dir, builds)
    blocks = 1 + max(BATCHES) * (MAX_MODEL_LEN // 16)
    engines = {name: runtime.load(path, num_kv_blocks=blocks) for name, path in artifacts.items()}
    rates: dict[str, dict[int, list[float]]] = {name: {b: [] for b in BATCHES} for name in engines}
    for name, engine in engines.items():                                   # warm-up: load and run every graph
        for batch in BATCHES:
            decode_tokens_per_s(engine, batch, 2, seed=-batch)
    for repeat in range(args.repeats):
        for batch in BATCHES:
            for name, engine in engines.items():
                rates[name][batch].append(decode_tokens_per_s(engine, batch, args.new_tokens, seed=repeat))
    results = {}
    for name, path in artifacts.items():
        weights = path / "weights.safetensors"
        results[name] = {"weights_file_bytes": weights.stat().st_size, "decoder_weight_bytes": decoder_bytes(weights),
                         "resident_weight_bytes": mapped_rss_bytes(weights),
                         **{f"decode_tok_s_batch{b}": statistics.median(rates[name][b]) for b in BATCHES}}
        report = json.loads((path / "report.json").read_text())
        if "fp8_quality" in report:
            from compile.fp8_report import quality_summary
            results[name]["quality"] = quality_summary(report["fp8_quality"])
    print(f"\nmodel {model} | threads {torch.get_num_threads()} | {args.new_tokens} decode tokens per sequence, "
          f"median of {args.repeats}")
    print(f"{'build':<7} {'decode tok/s b=1':>17} {'b=32':>9} {'weights file MB':>16} {'decoder weights MB':>19} "
          f"{'resident weights MB':>20}")
    for name, r in results.items():
        print(f"{name:<7} {r['decode_tok_s_batch1']:>17.2f} {r['decode_tok_s_batch32']:>9.2f} "
              f"{r['weights_file_bytes'] / 1e6:>16.1f} {r['decoder_weight_bytes'] / 1e6:>19.1f} "
              f"{r['resident_weight_bytes'] / 1e6:>20.1f}")
    bf16 = results["bf16"]
    for name, r in results.items():
        if name != "bf16":
            speed = {b: r[f"decode_tok_s_batch{b}"] / bf16[f"decode_tok_s_batch{b}"] for b in BATCHES}
            print(f"{name} / bf16: " + ", ".join(f"decode b={b} x{ratio:.2f}" for b, ratio in speed.items())
                  + f", decoder weights x{r['decoder_weight_bytes'] / bf16['decoder_weight_bytes']:.2f}")
    for name, r in results.items():
        if "quality" in r:
            print(f"{name} quality (random weights: a smoke figure only): {r['quality']}")
    if args.json:
        args.json.write_text(json.dumps({"model": str(model), "threads": torch.get_num_threads(),
                                         "rates": rates, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
