"""Offline throughput: output tokens/s of our engine vs transformers' batched generate, same run.

    python benchmarks/offline_throughput.py MODEL --num-prompts 64 --output-len 128

MODEL is a Hugging Face checkpoint directory (or an artifact: then transformers reads the
checkpoint given with --hf-model). Prompts are random token ids of --input-len tokens, every
request generates exactly --output-len tokens (eos ignored), greedy, so both sides do the same work.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def random_prompts(num: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(10, vocab - 1, (num, length), generator=g).tolist()


def bench_ours(model: str, prompts, output_len: int, dtype: str, enforce_eager: bool, max_num_seqs: int) -> dict:
    from runtime import LLM, SamplingParams
    kwargs = {"enforce_eager": True} if enforce_eager else {}
    t0 = time.perf_counter()
    llm = LLM(model=model, dtype=dtype, max_num_seqs=max_num_seqs, **kwargs)
    load_s = time.perf_counter() - t0
    params = SamplingParams(temperature=0.0, max_tokens=output_len, ignore_eos=True)
    llm.generate([{"prompt_token_ids": prompts[0]}], SamplingParams(max_tokens=2, ignore_eos=True), use_tqdm=False)
    t0 = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    elapsed = time.perf_counter() - t0
    generated = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"load_s": load_s, "elapsed_s": elapsed, "output_tokens": generated, "tokens_per_s": generated / elapsed}


def bench_transformers(model_dir: str, prompts, output_len: int, dtype: str, batch_size: int) -> dict:
    import transformers
    torch_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[dtype]
    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).eval()
    load_s = time.perf_counter() - t0
    generated = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            ids = torch.tensor(prompts[i:i + batch_size])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=output_len,
                                 min_new_tokens=output_len, pad_token_id=0)
            generated += (out.shape[1] - ids.shape[1]) * ids.shape[0]
    elapsed = time.perf_counter() - t0
    return {"load_s": load_s, "elapsed_s": elapsed, "output_tokens": generated, "tokens_per_s": generated / elapsed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--hf-model", help="checkpoint for transformers when MODEL is an artifact")
    ap.add_argument("--num-prompts", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    ap.add_argument("--max-num-seqs", type=int, default=32, help="our batch limit; also transformers' batch size")
    ap.add_argument("--enforce-eager", action="store_true", help="run our engine without compiled graphs")
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--output-json")
    args = ap.parse_args(argv)

    hf_dir = args.hf_model or args.model
    vocab = json.loads((Path(hf_dir) / "config.json").read_text())["vocab_size"]
    prompts = random_prompts(args.num_prompts, args.input_len, vocab)
    results = {"ours": bench_ours(args.model, prompts, args.output_len, args.dtype, args.enforce_eager,
                                  args.max_num_seqs)}
    if not args.skip_transformers:
        results["transformers"] = bench_transformers(hf_dir, prompts, args.output_len, args.dtype, args.max_num_seqs)
    print(f"\n{args.num_prompts} prompts x {args.input_len} in / {args.output_len} out, dtype {args.dtype}")
    print(f"{'engine':<14}{'tokens/s':>12}{'elapsed s':>12}{'load s':>10}")
    for name, r in results.items():
        print(f"{name:<14}{r['tokens_per_s']:>12.1f}{r['elapsed_s']:>12.2f}{r['load_s']:>10.2f}")
    if "transformers" in results:
        ratio = results["ours"]["tokens_per_s"] / results["transformers"]["tokens_per_s"]
        results["ratio_ours_vs_transformers"] = ratio
        print(f"ratio ours / transformers: {ratio:.2f}x")
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
