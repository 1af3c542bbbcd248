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
    """CPU/CUDA backend: torch's scaled_dot_product_attention over the gathered context."""
    write_kv(kv_cache, layer_idx, k, v, md.slot_mapping, k_scale, v_scale)
    k_ctx, v_ctx = gather_context(kv_cache, layer_idx, md.block_tables, k_scale, v_scale, q.dtype)
    mask = visibility_mask(positions, k_ctx.shape[2], sliding_window)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k_ctx, v_ctx, attn_mask=mask, scale=scale,
        enable_gqa=q.shape[2] != k.shape[2],
    )                                                                   # [B, Hq, Q, D]
    return out.transpose(1, 2)                                          # [B, Q, Hq, D]


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
