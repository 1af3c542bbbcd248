"""A peer engine's offline run, for side-by-side benchmarks: run it with the peer's own Python.

    .venv-vllm/bin/python benchmarks/peer_offline.py vllm CHECKPOINT --num-prompts 32 --input-len 64 --output-len 64
    .venv/bin/python benchmarks/peer_offline.py transformers CHECKPOINT ...

Prints one JSON line: cold start (process start -> first generated token), and tokens/s of a
batch of random-token prompts, each generating exactly --output-len tokens, greedy.
Imports only the peer and torch, so it runs in the peer's environment.
"""
from __future__ import annotations

import argparse
import json
import time

START = time.perf_counter()   # as close to process start as Python lets us


def random_prompts(num: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randint(10, vocab - 1, (num, length), generator=g).tolist()


def run_vllm(args, prompts) -> dict:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    llm = LLM(model=args.model, dtype=args.dtype, max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs,
              gpu_memory_utilization=args.memory_fraction, seed=0)
    llm.generate([TokensPrompt(prompt_token_ids=prompts[0])], SamplingParams(max_tokens=1), use_tqdm=False)
    cold = time.perf_counter() - START
    params = SamplingParams(temperature=0, max_tokens=args.output_len, ignore_eos=True)
    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    elapsed = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"cold_start_s": cold, "elapsed_s": elapsed, "output_tokens": tokens, "tokens_per_s": tokens / elapsed}


def run_transformers(args, prompts) -> dict:
    import torch
    import transformers
    dtype = getattr(torch, args.dtype)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).eval()
    with torch.inference_mode():
        ids = torch.tensor(prompts[:1])
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False, pad_token_id=0)
        cold = time.perf_counter() - START
        tokens = 0
        t0 = time.perf_counter()
        for i in range(0, len(prompts), args.max_num_seqs):
            ids = torch.tensor(prompts[i:i + args.max_num_seqs])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0,
                                 max_new_tokens=args.output_len, min_new_tokens=args.output_len)
            tokens += (out.shape[1] - ids.shape[1]) * ids.shape[0]
        elapsed = time.perf_counter() - t0
    return {"cold_start_s": cold, "elapsed_s": elapsed, "output_tokens": tokens, "tokens_per_s": tokens / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("peer", choices=["vllm", "transformers"])
    ap.add_argument("model", help="Hugging Face checkpoint directory")
    ap.add_argument("--num-prompts", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--max-num-seqs", type=int, default=32)
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--memory-fraction", type=float, default=0.3, help="vLLM's CPU memory share (its "
                    "--gpu-memory-utilization on the CPU backend)")
    args = ap.parse_args()
    vocab = json.load(open(f"{args.model}/config.json"))["vocab_size"]
    prompts = random_prompts(args.num_prompts, args.input_len, vocab)
    result = (run_vllm if args.peer == "vllm" else run_transformers)(args, prompts)
    print("RESULT " + json.dumps({"peer": args.peer, **result}), flush=True)


if __name__ == "__main__":
    main()
