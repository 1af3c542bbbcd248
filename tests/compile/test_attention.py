"""The CPU/CUDA attention backend's formulations agree with plain masked softmax attention.

Decode steps run one formulation eagerly (query heads folded per KV head, torch's sdpa) and
another inside compiled graphs (broadcast products the compiler fuses with the block-table
gather); prefill steps use torch's sdpa with GQA. Each is held to a reference written out by hand.
"""
from __future__ import annotations

import pytest
import torch

from compile.models.attention import decode_attention_by_reduction, sdpa_paged_attention
from runtime.attention_metadata import AttentionMetadata

BLOCK_SIZE = 4


def decode_case(num_heads: int, num_kv_heads: int, head_dim: int = 8, seed: int = 0):
    """Three decode rows: position 6 over blocks [1, 2], position 2 over [3, 0], and a padding row."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(3, 1, num_heads, head_dim, generator=g)
    k = torch.randn(3, 1, num_kv_heads, head_dim, generator=g)
    v = torch.randn(3, 1, num_kv_heads, head_dim, generator=g)
    kv_cache = torch.randn(2, 2, 6, BLOCK_SIZE, num_kv_heads, head_dim, generator=g)
    kv_cache[:, :, 0] = 0
    positions = torch.tensor([[6], [2], [0]])
    block_tables = torch.tensor([[1, 2], [3, 0], [0, 0]])
    slots = torch.tensor([[2 * BLOCK_SIZE + 2], [3 * BLOCK_SIZE + 2], [0]])
    md = AttentionMetadata(slots, block_tables, torch.tensor([7, 3, 1]))
    return q, k, v, kv_cache, positions, md


def reference_attention(q, kv_cache, layer, positions, block_tables, scale, window, k_scale=None, v_scale=None):
    """Per row and head: softmax(q . k_j * scale) over the visible keys j, weights on v_j (float64)."""
    out = torch.zeros(q.shape, dtype=torch.float64)
    num_heads, num_kv_heads = q.shape[2], kv_cache.shape[4]
    for b in range(q.shape[0]):
        keys = kv_cache[layer, 0][block_tables[b]].flatten(0, 1).double()     # [T, Hkv, D]
        values = kv_cache[layer, 1][block_tables[b]].flatten(0, 1).double()
        if k_scale is not None:
            keys, values = keys * float(k_scale), values * float(v_scale)
        for i, p in enumerate(positions[b].tolist()):
            visible = [j for j in range(keys.shape[0]) if j <= p and (window is None or p - j < window)]
            for h in range(num_heads):
                kv_head = h // (num_heads // num_kv_heads)
                scores = keys[visible, kv_head] @ q[b, i, h].double() * scale
                out[b, i, h] = scores.softmax(0) @ values[visible, kv_head]
    return out


@pytest.mark.parametrize("num_heads,num_kv_heads,window", [(4, 4, None), (4, 2, None), (4, 1, None), (4, 2, 3)])
def test_decode_formulations_match_the_reference(num_heads, num_kv_heads, window):
    q, k, v, kv_cache, positions, md = decode_case(num_heads, num_kv_heads)
    eager_cache, reduced_cache = kv_cache.clone(), kv_cache.clone()
    eager = sdpa_paged_attention(q, k, v, eager_cache, 1, positions, md, 0.3, window)
    expected = reference_attention(q, eager_cache, 1, positions, md.block_tables, 0.3, window)
    torch.testing.assert_close(eager.double(), expected, rtol=1e-5, atol=1e-5)
    # the graph formulation reads the cache the eager call wrote (the step's own K/V included)
    reduced = decode_attention_by_reduction(q, reduced_cache.copy_(eager_cache), 1, positions, md, 0.3, window)
    torch.testing.assert_close(reduced.double(), expected, rtol=1e-5, atol=1e-5)


def test_compiled_decode_takes_the_reduction_and_matches_eager():
    q, k, v, kv_cache, positions, md = decode_case(4, 2)
    eager_cache, compiled_cache = kv_cache.clone(), kv_cache.clone()
    eager = sdpa_paged_attention(q, k, v, eager_cache, 0, positions, md, 0.3, None)
    compiled = torch.compile(sdpa_paged_attention, fullgraph=True)(q, k, v, compiled_cache, 0, positions, md, 0.3, None)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled_cache, eager_cache)       # the step's K/V written in place, once


def test_decode_over_an_fp8_cache_matches_the_reference():
    q, k, v, kv_cache, positions, md = decode_case(4, 2)
    fp8_cache = (kv_cache / 0.05).to(torch.float8_e4m3fn)
    scales = {"k_scale": torch.tensor(0.05), "v_scale": torch.tensor(0.04)}
    eager_cache = fp8_cache.clone()
    eager = sdpa_paged_attention(q, k, v, eager_cache, 0, positions, md, 0.3, None, **scales)
    expected = reference_attention(q, eager_cache.float(), 0, positions, md.block_tables, 0.3, None, **scales)
    torch.testing.assert_close(eager.double(), expected, rtol=1e-4, atol=1e-4)
    reduced = decode_attention_by_reduction(q, eager_cache, 0, positions, md, 0.3, None, **scales)
    torch.testing.assert_close(reduced.double(), expected, rtol=1e-4, atol=1e-4)


def test_prefill_matches_the_reference():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 3, 4, 8, generator=g)
    k, v = torch.randn(2, 3, 2, 8, generator=g), torch.randn(2, 3, 2, 8, generator=g)
    kv_cache = torch.zeros(1, 2, 4, BLOCK_SIZE, 2, 8)
    positions = torch.tensor([[0, 1, 2], [0, 0, 0]])
    md = AttentionMetadata(torch.tensor([[4, 5, 6], [0, 0, 0]]), torch.tensor([[1], [0]]), torch.tensor([3, 1]))
    out = sdpa_paged_attention(q, k, v, kv_cache, 0, positions, md, 0.5, None)
    expected = reference_attention(q, kv_cache, 0, positions, md.block_tables, 0.5, None)
    torch.testing.assert_close(out[0].double(), expected[0], rtol=1e-5, atol=1e-5)
