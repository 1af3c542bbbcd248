"""Compile-stage benchmark: build time, artifact size, cold start, resident memory, and offline
throughput of the compiled engine vs the eager engine vs transformers' batched generate, one run.

    python benchmarks/compile_bench.py CHECKPOINT_DIR [--out artifacts/bench] [--num-prompts 16]

1. build: `gaudi-compile build CHECKPOINT_DIR -o OUT` in a new process (OUT is removed first unless
   --reuse), wall seconds, and per-bucket seconds from report.json.
2. size: the artifact on disk against the checkpoint's weights (one copy of the weights expected).
3. cold start: new process to the first byte of `gaudi-run generate OUT` on stdout, timed from
   outside (median of --cold-runs; the first run also pays for a cold page cache).
4. memory: a new process loads OUT and generates; its RSS (anonymous + file-backed) against one
   copy of the weights plus the KV cache it allocated.
5. throughput: output tokens/s for the same random prompts (greedy, eos ignored, exactly
   --output-len tokens each) through the compiled engine, the eager engine and transformers;
   and for the first prompt alone (one sequence: decode latency) compiled vs eager.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BIN = Path(sys.executable).parent

_MEMORY_PROBE = """
import json, sys, time
def mem():
    fields = (line.split() for line in open('/proc/self/status'))
    return {f[0][:-1]: int(f[1]) // 1024 for f in fields if f and f[0] in ('VmRSS:', 'RssAnon:', 'RssFile:')}
import torch, runtime
from runtime import SamplingParams
base = mem()
t = time.perf_counter()
engine = runtime.load(sys.argv[1])
load_s = time.perf_counter() - t
loaded = mem()
engine.generate(['hello world'] * 4, SamplingParams(max_tokens=16, ignore_eos=True))
kv = engine.runner.kv_cache
print(json.dumps({"after_imports_mb": base, "after_load_mb": loaded, "after_generate_mb": mem(), "load_s": load_s,
                  "kv_cache_mb": kv.numel() * kv.element_size() / 2**20,
                  "graphs_loaded": len(engine.runner.executor._graphs)}))
"""


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def checkpoint_weight_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.safetensors"))


def run_build(checkpoint: Path, out: Path, reuse: bool, jobs: int, extra: list[str]) -> dict:
    if out.exists() and not reuse:
        shutil.rmtree(out)
    start = time.perf_counter()
    done = subprocess.run([str(BIN / "gaudi-compile"), "build", str(checkpoint), "-o", str(out), "-j", str(jobs),
                           *extra], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"build failed:\n{done.stderr[-3000:]}")
    report = json.loads((out / "report.json").read_text())
    return {"wall_s": wall, "report_total_s": report["total_s"], "num_compiled": report["num_compiled"],
            "per_bucket_s": {r["bucket"]: round(r["export_s"] + r["compile_s"], 1) for r in report["buckets"]}}


def cold_start(out: Path, runs: int) -> dict:
    """Seconds from spawning `gaudi-run generate` to the first byte it prints."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen([str(BIN / "gaudi-run"), "generate", str(out), "--prompt", "The", "--max-tokens", "8",
                                 "--temperature", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        first = proc.stdout.read(1)
        times.append(time.perf_counter() - start)
        proc.communicate()
        if not first:
            raise SystemExit("gaudi-run generate printed nothing")
    return {"runs_s": [round(t, 2) for t in times], "median_s": statistics.median(times)}


def memory(out: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"memory probe failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def throughput(model: str, prompts, output_len: int, max_num_seqs: int, **options) -> dict:
    """Load one engine, then time it on all `prompts` at once and on the first prompt alone (one sequence)."""
    from runtime import LLM, SamplingParams

    start = time.perf_counter()
    llm = LLM(model=model, max_num_seqs=max_num_seqs, **options)
    load_s = time.perf_counter() - start
    llm.generate([{"prompt_token_ids": prompts[0]}], SamplingParams(max_tokens=2, ignore_eos=True), use_tqdm=False)
    params = SamplingParams(temperature=0.0, max_tokens=output_len, ignore_eos=True)

    def timed(batch) -> dict:
        start = time.perf_counter()
        outs = llm.generate([{"prompt_token_ids": p} for p in batch], params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        return {"elapsed_s": elapsed, "output_tokens": tokens, "tokens_per_s": tokens / elapsed,
                "token_ids": [o.outputs[0].token_ids for o in outs]}

    batched = {"load_s": load_s, **timed(prompts)}
    # one sequence at a time: decode latency, where per-step costs outside the matmuls matter most
    single = timed(prompts[:1])
    single.pop("token_ids")
    return {**batched, "single_stream": single}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="artifact dir [artifacts/bench-<checkpoint name>]")
    ap.add_argument("--reuse", action="store_true", help="keep an existing artifact (an incremental rebuild)")
    ap.add_argument("-j", "--jobs", type=int, default=1)
    ap.add_argument("--build-arg", action="append", default=[], help="extra gaudi-compile build argument")
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op threads for every engine and subprocess [torch's default]; on a CPU other jobs "
                         "share, 1 avoids OpenMP barrier stalls that swamp the comparison")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    from benchmarks.offline_throughput import bench_transformers, random_prompts
    from runtime.artifact import read_manifest

    if args.threads:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(args.threads)   # the build, gaudi-run and the memory probe inherit it
        torch.set_num_threads(args.threads)
    out = args.out or Path("artifacts") / f"bench-{args.checkpoint.resolve().name}"
    results: dict = {"checkpoint": str(args.checkpoint), "threads": args.threads or "default",
                     "load_average_start": os.getloadavg()}
    results["build"] = run_build(args.checkpoint, out, args.reuse, args.jobs, args.build_arg)
    manifest = read_manifest(out)
    results["size"] = {"artifact_mb": dir_bytes(out) / 1e6, "weights_file_mb": manifest.weights.size_bytes / 1e6,
                       "graphs_mb": sum(e.size_bytes for e in manifest.buckets) / 1e6,
                       "checkpoint_weights_mb": checkpoint_weight_bytes(args.checkpoint) / 1e6}
    results["cold_start"] = cold_start(out, args.cold_runs)
    results["memory"] = memory(out)
    results["memory"]["weights_mb"] = manifest.weights.size_bytes / 2**20

    prompts = random_prompts(args.num_prompts, args.input_len, manifest.model.vocab_size)
    seqs = results["max_num_seqs"] = manifest.max_num_seqs
    compiled = throughput(str(out), prompts, args.output_len, seqs)
    eager = throughput(str(args.checkpoint), prompts, args.output_len, seqs, enforce_eager=True, dtype=manifest.dtype,
                       max_model_len=manifest.max_model_len)
    results["single_stream"] = {"compiled": compiled.pop("single_stream"), "eager": eager.pop("single_stream")}
    results["throughput"] = {"compiled": compiled, "eager": eager,
                             "same_tokens": compiled.pop("token_ids") == eager.pop("token_ids")}
    if not args.skip_transformers:
        results["throughput"]["transformers"] = bench_transformers(str(args.checkpoint), prompts, args.output_len,
                                                                   manifest.dtype, seqs)
    results["load_average_end"] = os.getloadavg()
    print_summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_summary(r: dict) -> None:
    b, s, c, m, t = r["build"], r["size"], r["cold_start"], r["memory"], r["throughput"]
    print(f"machine      threads {r['threads']}, load average {r['load_average_start'][0]:.1f} at start, "
          f"{r['load_average_end'][0]:.1f} at the end (other jobs share these cores)")
    print(f"build        {b['wall_s']:.1f} s wall ({b['num_compiled']} graphs compiled); per bucket: "
          + ", ".join(f"{k} {v} s" for k, v in b["per_bucket_s"].items()))
    print(f"size         artifact {s['artifact_mb']:.1f} MB = weights {s['weights_file_mb']:.1f} MB + graphs "
          f"{s['graphs_mb']:.1f} MB (+ tokenizer); checkpoint weights {s['checkpoint_weights_mb']:.1f} MB")
    print(f"cold start   {c['median_s']:.2f} s median to the first byte of gaudi-run generate ({c['runs_s']})")
    after = m["after_generate_mb"]
    print(f"memory       RSS {after['VmRSS']} MB (anon {after['RssAnon']}, file {after['RssFile']}) after load + "
          f"generate; import torch + runtime alone {m['after_imports_mb']['VmRSS']} MB; weights "
          f"{m['weights_mb']:.0f} MB + KV cache {m['kv_cache_mb']:.0f} MB; {m['graphs_loaded']} graphs loaded; "
          f"load {m['load_s']:.2f} s")
    base = t["compiled"]["tokens_per_s"]
    for name in ("compiled", "eager", "transformers"):
        if name in t:
            tps = t[name]["tokens_per_s"]
            print(f"throughput   {name:<12} {tps:8.1f} tok/s  (compiled / {name} = {base / tps:.2f}x)")
    print(f"             compiled and eager greedy tokens identical: {t['same_tokens']}")
    one = r["single_stream"]
    print(f"one sequence compiled {one['compiled']['tokens_per_s']:.1f} tok/s, eager {one['eager']['tokens_per_s']:.1f} "
          f"tok/s (compiled / eager = {one['compiled']['tokens_per_s'] / one['eager']['tokens_per_s']:.2f}x)")


if __name__ == "__main__":
    raise SystemExit(main())
