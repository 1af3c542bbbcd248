"""The hpu attention backend: Habana's FusedSDPA over the paged KV cache, registered as "fused_sdpa".

Same semantics as `sdpa_paged_attention`: write the step's K/V into their slots, gather each
sequence's context through its block table, and let the query at position p see key j iff j <= p
(and p - j < sliding_window). Only the attention kernel differs.

Written to Habana's documented API (habana_frameworks.torch.hpex.kernels.FusedSDPA, as called by
vLLM's Gaudi backend in vllm_hpu_extension/ops.py and by optimum-habana) and tested against a fake
habana_frameworks module; it has not run on a Gaudi here. habana_frameworks is imported inside the
function, so this module imports (and registers the backend) on any machine.
"""
from __future__ import annotations

import torch

from compile.models.attention import gather_context, register_backend, visibility_mask, write_kv
from runtime.attention_metadata import AttentionMetadata

# FusedSDPA's softmax_mode: "None" is the exact softmax ("fast" trades accuracy for speed), so the
# graphs compute what the sdpa backend computes.
SOFTMAX_MODE = "None"
# recompute_mode=True is the flash-attention variant that never materialises the [Q, T] scores for
# all heads at once; Habana forces it anyway for single-token queries in inference.
RECOMPUTE_MODE = True


def attention_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, Q, T] bool visibility -> additive bias in `dtype` (0 visible, -inf hidden).

    Why a float bias rather than the bool mask: vLLM's Gaudi backend hands FusedSDPA an additive
    bias in the activation dtype whenever queries attend to a cached context. Every row sees at
    least key 0 (the null block for padding), so no row is all -inf.
    """
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))


def fused_sdpa_paged_attention(q, k, v, kv_cache, layer_idx, positions, md: AttentionMetadata, scale,
                               sliding_window, k_scale=None, v_scale=None):
    """HPU backend: FusedSDPA over the gathered context; q [B, Q, Hq, D] -> [B, Q, Hq, D].

    With an FP8 KV cache (k_scale, v_scale given) K/V are quantised on write and dequantised on
    gather exactly as in the sdpa backend, so FusedSDPA always sees the activation dtype.
    """
    from habana_frameworks.torch.hpex.kernels import FusedSDPA

    write_kv(kv_cache, layer_idx, k, v, md.slot_mapping, k_scale, v_scale)
    k_ctx, v_ctx = gather_context(kv_cache, layer_idx, md.block_tables, k_scale, v_scale, q.dtype)  # [B, Hkv, T, D]
    bias = attention_bias(visibility_mask(positions, k_ctx.shape[2], sliding_window), q.dtype)  # [B, 1, Q, T]
    # FusedSDPA takes [B, H, S, D] and handles grouped K/V heads itself (Hkv dividing Hq, or Hkv == 1).
    # Positional arguments, as vLLM passes them: q, k, v, attn_mask, dropout_p, is_causal, scale,
    # softmax_mode, recompute_mode, valid_seq_len, seq_padding_type. is_causal stays False: the
    # bias already encodes causality with each query's offset into its cached context.
    out = FusedSDPA.apply(q.transpose(1, 2), k_ctx, v_ctx, bias, 0.0, False, scale, SOFTMAX_MODE,
                          RECOMPUTE_MODE, None, "right")                        # [B, Hq, Q, D]
    return out.transpose(1, 2)                                                 # [B, Q, Hq, D]


register_backend("fused_sdpa", fused_sdpa_paged_attention)
