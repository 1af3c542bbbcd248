"""The FP8 quality report: the quantised model against the build-dtype one, on held-out text.

Computed at build time with the eager model and written to report.json under "fp8_quality";
`gaudi-compile inspect` shows it. On the cpu target the FP8 side multiplies by the exact dequantised
weights (FP8Linear.use_eager_weight), the values its kernel uses; cuda and hpu run their kernels,
activation quantisation included. Figures:

- kl_mean / kl_max: per-token KL(build dtype || FP8) of the next-token distributions, nats;
- top1_agreement: share of positions whose most likely next token is the same;
- perplexity_reference / perplexity_fp8: of the held-out text itself, under each model;
- greedy_match: for a prompt cut from each held-out text, how many greedily generated tokens are
  equal before the first divergence (at most max_new_tokens).
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import torch

from compile.calibration_data import HELD_OUT_TEXTS
from compile.eager_runs import greedy_continuation, kv_cache_dtype, sequence_logits

HELD_OUT_MAX_TOKENS = 128
GREEDY_PROMPT_TOKENS = 16
GREEDY_MAX_NEW_TOKENS = 32


def _matching_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def quality_report(model, quantized: Callable[[], contextlib.AbstractContextManager], tokenizer,
                   max_model_len: int | None = None, texts: tuple[str, ...] = HELD_OUT_TEXTS) -> dict:
    """Compare `model` as it is with `model` inside `quantized()`; a dict for report.json."""
    start = time.perf_counter()
    limit = min(HELD_OUT_MAX_TOKENS, max_model_len or HELD_OUT_MAX_TOKENS)
    sequences = [ids for ids in (tokenizer.encode(t)[:limit] for t in texts) if len(ids) >= 2]
    if not sequences:
        raise ValueError("the held-out text tokenizes to fewer than 2 tokens per text; cannot measure FP8 quality.")
    kls, agree, nll_ref, nll_fp8, greedy = [], 0, 0.0, 0.0, []
    new_tokens = 0
    for ids in sequences:
        ref = sequence_logits(model, ids).log_softmax(-1)                     # [T, V]
        with quantized():
            fp8 = sequence_logits(model, ids).log_softmax(-1)
        kls.append((ref.exp() * (ref - fp8)).sum(-1).clamp(min=0))            # [T]
        agree += int((ref.argmax(-1) == fp8.argmax(-1)).sum())
        targets = torch.tensor(ids[1:])[:, None]                              # [T-1, 1]
        nll_ref -= float(ref[:-1].gather(1, targets).sum())
        nll_fp8 -= float(fp8[:-1].gather(1, targets).sum())
        prompt = ids[:GREEDY_PROMPT_TOKENS]
        new_tokens = min(GREEDY_MAX_NEW_TOKENS, (max_model_len or 1 << 30) - len(prompt))
        reference = greedy_continuation(model, prompt, new_tokens)
        with quantized():
            greedy.append(_matching_prefix(reference, greedy_continuation(model, prompt, new_tokens)))
    kl = torch.cat(kls)
    num_targets = sum(len(ids) - 1 for ids in sequences)
    with quantized():
        fp8_kv = str(kv_cache_dtype(model)).removeprefix("torch.")
    return {
        "held_out_texts": len(sequences), "tokens": int(kl.numel()),
        "kl_mean": round(float(kl.mean()), 6), "kl_max": round(float(kl.max()), 6),
        "top1_agreement": round(agree / kl.numel(), 4),
        "perplexity_reference": round(math.exp(nll_ref / num_targets), 4),
        "perplexity_fp8": round(math.exp(nll_fp8 / num_targets), 4),
        "greedy_match": {"per_prompt": greedy, "mean": round(sum(greedy) / len(greedy), 2),
                         "all_equal": sum(g == new_tokens for g in greedy), "prompt_tokens": GREEDY_PROMPT_TOKENS,
                         "max_new_tokens": new_tokens},
        "reference_dtype": str(model.model.norm.weight.dtype).removeprefix("torch."),
        "kv_cache_dtype": fp8_kv, "seconds": round(time.perf_counter() - start, 2),
    }


def quality_summary(quality: dict) -> str:
    """One line of a report's "fp8_quality" figures, for the CLI."""
    greedy = quality["greedy_match"]
    return (f"KL mean {quality['kl_mean']:.4f} / max {quality['kl_max']:.4f} nats, top-1 agreement "
            f"{100 * quality['top1_agreement']:.1f}%, perplexity {quality['perplexity_reference']:.2f} "
            f"({quality['reference_dtype']}) -> {quality['perplexity_fp8']:.2f} (FP8), greedy tokens equal before "
            f"the first divergence {greedy['mean']:.1f} of {greedy['max_new_tokens']} on average "
            f"({greedy['all_equal']}/{len(greedy['per_prompt'])} prompts throughout); "
            f"{quality['tokens']} held-out tokens")


def quantization_summary(section: dict) -> str:
    """One line describing a manifest's "quantization" section, for the CLI."""
    parts = []
    if "weights" in section:
        weights = section["weights"]
        parts.append(f"fp8: {len(weights['modules'])} decoder linears in {weights['dtype']} with per-channel scales "
                     f"({weights['kernel']} kernel)")
        if "embeddings" in section:
            parts.append("embeddings in float8_e4m3fn with per-row scales")
        parts.append(f"{weights['not_quantized']} unquantised")
    if "kv_cache" in section:
        parts.append(f"KV cache {section['kv_cache']['dtype']} with per-layer scales")
    if "calibration" in section:
        calib = section["calibration"]
        parts.append(f"calibrated on {calib['samples']} texts ({calib['tokens']} tokens, {calib['data']})")
    return "; ".join(parts) or section.get("scheme", "none")
