"""Paged attention backends: the one dispatch point for how attention runs on a target.

Every backend writes the step's new K/V into the paged cache in place, then attends each query
to the keys of its own sequence up to its own position. The model calls `backend(...)` and
never branches on the device.

FP8 KV cache: when the cache is float8_e4m3fn the model passes per-layer `k_scale` and `v_scale`
(float32 scalars from calibration); K/V are stored as e4m3 codes of K / k_scale (quantised on write)
and multiplied back on read, in the activation dtype.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from runtime.attention_metadata import AttentionMetadata


class AttentionBackend(Protocol):
    def __call__(
        self,
        q: torch.Tensor,          # [B, Q, Hq, D]
        k: torch.Tensor,          # [B, Q, Hkv, D]
        v: torch.Tensor,          # [B, Q, Hkv, D]
        kv_cache: torch.Tensor,   # [L, 2, num_blocks, block_size, Hkv, D], layer `layer_idx` written in place
        layer_idx: int,
        positions: torch.Tensor,  # [B, Q]
        md: AttentionMetadata,
        scale: float,
        sliding_window: int | None,
        k_scale: torch.Tensor | None = None,   # [] float32, FP8 cache only
        v_scale: torch.Tensor | None = None,
    ) -> torch.Tensor: ...       # [B, Q, Hq, D]


def quantize_kv(x: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """K or V -> e4m3 codes of x / scale, saturated at the format's largest value."""
    fp8_max = torch.finfo(dtype).max
    return (x.float() / scale).clamp(-fp8_max, fp8_max).to(dtype)


def write_kv(kv_cache: torch.Tensor, layer_idx: int, k: torch.Tensor, v: torch.Tensor,
             slot_mapping: torch.Tensor, k_scale: torch.Tensor | None = None,
             v_scale: torch.Tensor | None = None) -> None:
    """Scatter the step's K/V into their cache slots (padding goes to the null block's slot 0).

    Why index_put_ on the whole cache with one index tensor per dimension: AOTInductor turns this
    into an in-place scatter of just the new tokens, while writing through a view of one layer
    (kv_cache[l, 0].view(...).index_copy_) compiles to a copy of the entire cache on every call.
    """
    block_size, num_kv_heads, head_dim = kv_cache.shape[-3:]
    slots = slot_mapping.reshape(-1)                                    # [B*Q]
    blocks, offsets = slots // block_size, slots % block_size
    layer = torch.full_like(slots, layer_idx)
    if k_scale is not None:
        k, v = quantize_kv(k, k_scale, kv_cache.dtype), quantize_kv(v, v_scale, kv_cache.dtype)
    kv_cache.index_put_((layer, torch.zeros_like(slots), blocks, offsets), k.reshape(-1, num_kv_heads, head_dim))
    kv_cache.index_put_((layer, torch.ones_like(slots), blocks, offsets), v.reshape(-1, num_kv_heads, head_dim))


def gather_context(kv_cache: torch.Tensor, layer_idx: int, block_tables: torch.Tensor,
                   k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None,
                   dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sequence's keys and values, in position order: two [B, Hkv, M*block_size, D] tensors.

    With scales (FP8 cache) they come back dequantised, in `dtype`.
    """
    batch, max_blocks = block_tables.shape
    block_size, num_kv_heads, head_dim = kv_cache.shape[-3:]
    ctx = kv_cache[layer_idx][:, block_tables]                          # [2, B, M, bs, Hkv, D]
    ctx = ctx.reshape(2, batch, max_blocks * block_size, num_kv_heads, head_dim).transpose(2, 3)
    if k_scale is not None:
        return ctx[0].to(dtype) * k_scale.to(dtype), ctx[1].to(dtype) * v_scale.to(dtype)
    return ctx[0], ctx[1]                                               # [B, Hkv, T, D] each


def visibility_mask(positions: torch.Tensor, num_keys: int, sliding_window: int | None) -> torch.Tensor:
    """[B, 1, Q, T] bool: key j is visible to the query at position p iff j <= p (and p - j < window)."""
    key_pos = torch.arange(num_keys, device=positions.device)         # [T]
    query_pos = positions.unsqueeze(-1)                                 # [B, Q, 1]
    mask = key_pos <= query_pos                                         # [B, Q, T]
    if sliding_window is not None:
        mask = mask & (query_pos - key_pos < sliding_window)
    return mask.unsqueeze(1)


def sdpa_paged_attention(q, k, v, kv_cache, layer_idx, positions, md: AttentionMetadata, scale, sliding_window,
                         k_scale=None, v_scale=None):
    """CPU/CUDA backend: write the step's K/V, then attend over each sequence's gathered context.

    Decode steps (one query per sequence) take a different formulation when traced for a graph than
    when run eagerly, each the faster one where it runs (30M model's shapes, bf16, 2 threads, per
    layer at batch 16 over 256 keys: torch's GQA sdpa 2.4 ms eager / 3.0 ms compiled; query heads
    folded per KV head 0.8 / 0.5 ms; the reduction below, compiled, 0.3 ms, and 2x ahead of the
    folded sdpa at 1024 keys). Both compute the same attention; tests hold them to each other.
    """
    write_kv(kv_cache, layer_idx, k, v, md.slot_mapping, k_scale, v_scale)
    if q.shape[1] == 1 and torch.compiler.is_compiling():
        return decode_attention_by_reduction(q, kv_cache, layer_idx, positions, md, scale, sliding_window,
                                             k_scale, v_scale)
    k_ctx, v_ctx = gather_context(kv_cache, layer_idx, md.block_tables, k_scale, v_scale, q.dtype)
    mask = visibility_mask(positions, k_ctx.shape[2], sliding_window)        # [B, 1, Q, T]
    batch, query_len, num_heads, head_dim = q.shape
    num_kv_heads = k_ctx.shape[1]
    if query_len == 1 and num_heads != num_kv_heads:
        # decode with GQA: the query heads sharing a KV head become rows of one attention over it,
        # so the context is read once per KV head instead of being expanded to every query head
        q_rows = q.reshape(batch, num_kv_heads, num_heads // num_kv_heads, head_dim)
        out = F.scaled_dot_product_attention(q_rows, k_ctx, v_ctx, attn_mask=mask, scale=scale)
        return out.reshape(batch, 1, num_heads, head_dim)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k_ctx, v_ctx, attn_mask=mask, scale=scale,
        enable_gqa=num_heads != num_kv_heads,
    )                                                                   # [B, Hq, Q, D]
    return out.transpose(1, 2)                                          # [B, Q, Hq, D]


def decode_attention_by_reduction(q, kv_cache, layer_idx, positions, md: AttentionMetadata, scale, sliding_window,
                                  k_scale=None, v_scale=None):
    """Attention written as broadcast products and sums, in float32, for the compiler to fuse.

    Inductor turns each product-and-sum into one loop that reads the cache blocks through the
    block table in place: no gathered copy of the context, no expanded KV heads. Eagerly this
    would materialise [B, Q, T, Hkv, G, D] products, so only traced graphs use it.
    """
    batch, query_len, num_heads, head_dim = q.shape
    block_size, num_kv_heads = kv_cache.shape[3], kv_cache.shape[4]
    group = num_heads // num_kv_heads
    num_keys = md.block_tables.shape[1] * block_size
    keys = kv_cache[layer_idx, 0][md.block_tables].reshape(batch, 1, num_keys, num_kv_heads, 1, head_dim).float()
    values = kv_cache[layer_idx, 1][md.block_tables].reshape(batch, 1, num_keys, num_kv_heads, 1, head_dim).float()
    if k_scale is not None:
        keys, values = keys * k_scale, values * v_scale
    q_rows = q.float().reshape(batch, query_len, 1, num_kv_heads, group, head_dim)
    scores = (q_rows * keys).sum(-1) * scale                                  # [B, Q, T, Hkv, G]
    visible = visibility_mask(positions, num_keys, sliding_window)[:, 0]    # [B, Q, T]
    probs = scores.masked_fill(~visible[..., None, None], float("-inf")).softmax(dim=2)
    out = (probs.unsqueeze(-1) * values).sum(2)                              # [B, Q, Hkv, G, D]
    return out.reshape(batch, query_len, num_heads, head_dim).to(q.dtype)


_BACKENDS: dict[str, Callable[..., torch.Tensor]] = {
    "sdpa": sdpa_paged_attention,
}


def register_backend(name: str, fn: Callable[..., torch.Tensor]) -> None:
    """Targets with their own fused attention (hpu: FusedSDPA) register it here."""
    _BACKENDS[name] = fn


def get_backend(name: str) -> Callable[..., torch.Tensor]:
    if name not in _BACKENDS:
        raise ValueError(f"attention backend {name!r} is unknown; available: {', '.join(sorted(_BACKENDS))}.")
    return _BACKENDS[name]
