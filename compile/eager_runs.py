"""Run the eager model over one token sequence at build time: calibration and the FP8 quality report.

Each call gives the sequence its own paged KV cache: block 0 stays the null block, the sequence owns
blocks 1..n in order, so token t sits in slot block_size + t.
"""
from __future__ import annotations

import torch

from compile.models.llama import LlamaForCausalLM, kv_cache_shape
from runtime.attention_metadata import AttentionMetadata

BLOCK_SIZE = 16


def kv_cache_dtype(model: LlamaForCausalLM) -> torch.dtype:
    """float8_e4m3fn when the model stores K/V as FP8 (its attention layers have K/V scales), else its dtype."""
    attn = model.model.layers[0].self_attn
    if getattr(attn, "k_scale", None) is not None:
        return torch.float8_e4m3fn
    return model.model.norm.weight.dtype          # norms always stay in the build dtype


def _new_cache(model: LlamaForCausalLM, num_tokens: int, device: torch.device) -> torch.Tensor:
    num_blocks = 1 + -(-num_tokens // BLOCK_SIZE)
    return torch.zeros(kv_cache_shape(model.config, num_blocks, BLOCK_SIZE), dtype=kv_cache_dtype(model),
                       device=device)                     # [L, 2, num_blocks, block_size, Hkv, D]


def _step(model, kv_cache, token_ids: list[int], start: int, device) -> torch.Tensor:
    """Run tokens at positions start.. of the one sequence; [len(token_ids), hidden] final hidden states."""
    num_tokens, total = len(token_ids), start + len(token_ids)
    positions = torch.arange(start, total, device=device)
    md = AttentionMetadata(
        slot_mapping=(positions + BLOCK_SIZE)[None],                                     # [1, T]
        block_tables=torch.arange(1, kv_cache.shape[2], device=device)[None],            # [1, num_blocks - 1]
        seq_lens=torch.tensor([total], device=device))                                   # [1]
    ids = torch.tensor([token_ids], device=device)
    return model(ids, positions[None], kv_cache, md)[0]                                  # [T, hidden]


@torch.no_grad()
def sequence_hidden(model: LlamaForCausalLM, token_ids: list[int]) -> torch.Tensor:
    """[T, hidden] final hidden states of `token_ids` run as one prefill."""
    device = model.model.embed_tokens.weight.device
    return _step(model, _new_cache(model, len(token_ids), device), token_ids, 0, device)


@torch.no_grad()
def sequence_logits(model: LlamaForCausalLM, token_ids: list[int]) -> torch.Tensor:
    """[T, vocab] float32 next-token logits at every position of `token_ids` (one prefill)."""
    return model.compute_logits(sequence_hidden(model, token_ids)).float().cpu()


@torch.no_grad()
def greedy_continuation(model: LlamaForCausalLM, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """The `max_new_tokens` tokens greedy decoding appends to `prompt_ids` (prefill, then one token a step)."""
    device = model.model.embed_tokens.weight.device
    kv_cache = _new_cache(model, len(prompt_ids) + max_new_tokens, device)
    hidden = _step(model, kv_cache, list(prompt_ids), 0, device)[-1:]
    out: list[int] = []
    for _ in range(max_new_tokens):
        out.append(int(model.compute_logits(hidden).argmax(-1)))
        hidden = _step(model, kv_cache, out[-1:], len(prompt_ids) + len(out) - 1, device)
    return out
