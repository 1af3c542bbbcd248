"""Serving latency and throughput of any OpenAI-compatible server, measured as `vllm bench serve` does.

    python benchmarks/serving.py --base-url http://127.0.0.1:8000 --model NAME \\
        --concurrency 1,8,32 --num-prompts 64 --input-len 128 --output-len 128 [--output-json out.json]

Every request streams /v1/completions with exactly --input-len random prompt tokens, max_tokens
--output-len and ignore_eos, so every server does the same work. At each concurrency all prompts
are sent at once and at most that many are in flight. Per request, as vLLM measures them:
- TTFT: request sent -> first streamed chunk with a choice;
- ITL: the gaps between later chunks;
- TPOT: (latency - TTFT) / (output tokens - 1), output tokens from the stream's usage chunk.
Prompts are token ids drawn from the server's own vocabulary (its /tokenize, or --tokenizer DIR
holding a tokenizer.json), sent as token-id prompts so their length is exact.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

# Words whose tokens make the pool random prompts are drawn from when the server tokenizes.
_WORDS = ("the of and to in is was for on that with as by at from his her they have this which one "
          "time year people way day man thing woman life child world school state family student group "
          "country problem hand part place case week company system program question work government "
          "number night point home water room mother area money story fact month lot right study book "
          "eye job word business issue side kind head house service friend father power hour game line").split()


@dataclass
class RequestResult:
    ok: bool
    prompt_len: int
    output_len: int = 0
    ttft_s: float = 0.0
    latency_s: float = 0.0
    itl_s: list[float] = field(default_factory=list)
    error: str = ""


async def token_pool(client: httpx.AsyncClient, model: str, tokenizer_dir: str | None) -> list[int]:
    """Token ids to draw prompts from: a local tokenizer's vocabulary, or the server's /tokenize."""
    if tokenizer_dir:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
        special = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
        return [i for tok_str, i in tok.get_vocab().items() if tok_str not in special]
    resp = await client.post("/tokenize", json={"model": model, "prompt": " ".join(_WORDS),
                                                "add_special_tokens": False})
    if resp.status_code != 200:
        raise SystemExit(f"error: {resp.request.url} answered {resp.status_code}; pass --tokenizer DIR "
                         "(a directory with the model's tokenizer.json) to make prompts locally.")
    return sorted(set(resp.json()["tokens"]))


async def send(client: httpx.AsyncClient, url: str, model: str, prompt: list[int], output_len: int,
               headers: dict) -> RequestResult:
    payload = {"model": model, "prompt": prompt, "max_tokens": output_len, "ignore_eos": True,
               "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}}
    result = RequestResult(ok=False, prompt_len=len(prompt))
    num_chunks = 0
    start = last = time.perf_counter()
    try:
        async with client.stream("POST", url, json=payload, headers=headers) as resp:
            if resp.status_code != 200:
                result.error = f"HTTP {resp.status_code}: {(await resp.aread()).decode()[:200]}"
                return result
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    result.error = str(chunk["error"])
                    return result
                if chunk.get("choices"):
                    now = time.perf_counter()
                    if num_chunks == 0:
                        result.ttft_s = now - start
                    else:
                        result.itl_s.append(now - last)
                    num_chunks, last = num_chunks + 1, now
                elif chunk.get("usage"):
                    result.output_len = chunk["usage"]["completion_tokens"]
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.latency_s = last - start
    result.output_len = result.output_len or num_chunks
    result.ok = num_chunks > 0
    return result


def summarize(results: list[RequestResult], duration_s: float, concurrency: int) -> dict:
    """vLLM's benchmark metrics (its key names), latencies in milliseconds."""
    done = [r for r in results if r.ok]
    out = {"concurrency": concurrency, "completed": len(done), "failed": len(results) - len(done),
           "duration": duration_s,
           "total_input_tokens": sum(r.prompt_len for r in done),
           "total_output_tokens": sum(r.output_len for r in done)}
    out["request_throughput"] = len(done) / duration_s
    out["output_throughput"] = out["total_output_tokens"] / duration_s
    out["total_token_throughput"] = (out["total_input_tokens"] + out["total_output_tokens"]) / duration_s
    series = {
        "ttft": [r.ttft_s for r in done],
        "tpot": [(r.latency_s - r.ttft_s) / (r.output_len - 1) for r in done if r.output_len > 1],
        "itl": [gap for r in done for gap in r.itl_s],
        "e2el": [r.latency_s for r in done],
    }
    for name, values in series.items():
        ms = np.asarray(values or [0.0]) * 1000.0
        out[f"mean_{name}_ms"] = float(ms.mean())
        out[f"median_{name}_ms"] = float(np.median(ms))
        out[f"p99_{name}_ms"] = float(np.percentile(ms, 99))
    out["errors"] = sorted({r.error for r in results if not r.ok})[:5]
    return out


async def run_level(args, model: str, prompts: list[list[int]], concurrency: int) -> dict:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=args.base_url, timeout=args.request_timeout, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(prompt):
            async with gate:
                return await send(client, args.endpoint, model, prompt, args.output_len, headers)

        start = time.perf_counter()
        results = await asyncio.gather(*[one(p) for p in prompts])
        return summarize(results, time.perf_counter() - start, concurrency)


async def main_async(args) -> dict:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    async with httpx.AsyncClient(base_url=args.base_url, timeout=args.request_timeout, headers=headers) as client:
        model = args.model or (await client.get("/v1/models")).json()["data"][0]["id"]
        pool = await token_pool(client, model, args.tokenizer)
        rng = random.Random(args.seed)
        prompts = [[rng.choice(pool) for _ in range(args.input_len)] for _ in range(args.num_prompts)]
        if args.warmup:
            warm = await send(client, args.endpoint, model, prompts[0], min(args.output_len, 4), {})
            if not warm.ok:
                raise SystemExit(f"error: the warm-up request failed: {warm.error}")
    levels = [await run_level(args, model, prompts, c) for c in args.concurrency]
    return {"base_url": args.base_url, "endpoint": args.endpoint, "model": model,
            "num_prompts": args.num_prompts, "input_len": args.input_len, "output_len": args.output_len,
            "results": levels}


def print_table(report: dict) -> None:
    print(f"{report['model']} at {report['base_url']}: {report['num_prompts']} prompts, "
          f"{report['input_len']} tokens in, {report['output_len']} tokens out")
    head = (f"{'conc':>5} {'ok':>5} {'fail':>4} {'dur s':>7} {'req/s':>7} {'out tok/s':>9} {'tok/s':>8} "
            f"{'TTFT ms mean/p50/p99':>22} {'TPOT ms mean/p50/p99':>22} {'ITL ms mean/p50/p99':>22}")
    print(head)
    print("-" * len(head))

    def trio(r, name):
        return f"{r[f'mean_{name}_ms']:.1f}/{r[f'median_{name}_ms']:.1f}/{r[f'p99_{name}_ms']:.1f}"

    for r in report["results"]:
        print(f"{r['concurrency']:>5} {r['completed']:>5} {r['failed']:>4} {r['duration']:>7.2f} "
              f"{r['request_throughput']:>7.2f} {r['output_throughput']:>9.1f} {r['total_token_throughput']:>8.1f} "
              f"{trio(r, 'ttft'):>22} {trio(r, 'tpot'):>22} {trio(r, 'itl'):>22}")
        for error in r["errors"]:
            print(f"      error: {error}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-url", default="http://127.0.0.1:8000")
    p.add_argument("--endpoint", default="/v1/completions")
    p.add_argument("--model", help="Model name to request (default: the server's first model).")
    p.add_argument("--concurrency", default="1,8,32",
                   type=lambda s: [int(c) for c in s.split(",") if c.strip()],
                   help="Comma-separated numbers of requests in flight.")
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--tokenizer", help="Directory with tokenizer.json (default: the server's /tokenize).")
    p.add_argument("--api-key")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--request-timeout", type=float, default=600.0)
    p.add_argument("--no-warmup", dest="warmup", action="store_false")
    p.add_argument("--output-json", help="Also write the report to this file.")
    args = p.parse_args(argv)
    for name in ("num_prompts", "input_len", "output_len"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.concurrency or min(args.concurrency) < 1:
        p.error("--concurrency must list positive integers, e.g. 1,8,32")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    report = asyncio.run(main_async(args))
    print_table(report)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["results"] else 1)
