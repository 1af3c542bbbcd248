"""The Llama family (Llama 2/3/3.x, Mistral, Qwen2, Qwen3) over a paged KV cache.

Parameter names are Hugging Face's, so checkpoints load with a plain state dict. Forward takes
every per-step input explicitly (positions, the cache, AttentionMetadata) so one bucket shape
traces to one static graph. Family differences come only from ModelConfig flags.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from compile.models.attention import get_backend
from compile.models.config import ModelConfig, RopeConfig
from runtime.attention_metadata import AttentionMetadata


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in fp32, scale in the input dtype: the order transformers uses
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def rope_inv_freq(rope: RopeConfig, head_dim: int) -> torch.Tensor:
    """[head_dim // 2] inverse frequencies, with linear or llama3 scaling applied."""
    inv_freq = 1.0 / (rope.theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if rope.rope_type == "linear":
        return inv_freq / rope.factor
    if rope.rope_type == "llama3":
        old_len = rope.original_max_position_embeddings
        low_wavelen = old_len / rope.low_freq_factor
        high_wavelen = old_len / rope.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / rope.factor, inv_freq)
        smooth = (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
        smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
        is_medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return torch.where(is_medium, smoothed, scaled)
    return inv_freq


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int, attention_backend: str):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.num_heads * self.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, cfg.hidden_size, bias=cfg.o_bias)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.qk_norm = cfg.qk_norm
        self.sliding_window = cfg.sliding_window
        self.scale = self.head_dim ** -0.5
        self.attend = get_backend(attention_backend)
        # FP8 KV cache only (set by compile/quantize.py): [] float32 scales of the e4m3 K and V codes
        self.register_buffer("k_scale", None)
        self.register_buffer("v_scale", None)

    def forward(self, x, cos, sin, kv_cache, positions, md: AttentionMetadata):
        batch, q_len, _ = x.shape
        q = self.q_proj(x).view(batch, q_len, self.num_heads, self.head_dim)      # [B, Q, Hq, D]
        k = self.k_proj(x).view(batch, q_len, self.num_kv_heads, self.head_dim)   # [B, Q, Hkv, D]
        v = self.v_proj(x).view(batch, q_len, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        kv_scales = {} if self.k_scale is None else {"k_scale": self.k_scale, "v_scale": self.v_scale}
        out = self.attend(q, k, v, kv_cache, self.layer_idx, positions, md, self.scale, self.sliding_window,
                          **kv_scales)                                                  # [B, Q, Hq, D]
        return self.o_proj(out.reshape(batch, q_len, self.num_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int, attention_backend: str):
        super().__init__()
        self.self_attn = Attention(cfg, layer_idx, attention_backend)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, kv_cache, positions, md):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, kv_cache, positions, md)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg: ModelConfig, attention_backend: str):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i, attention_backend) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    """One class for the whole family; `forward` returns final-norm hidden states, `compute_logits` the logits."""

    def __init__(self, cfg: ModelConfig, attention_backend: str = "sdpa"):
        super().__init__()
        self.config = cfg
        self.model = LlamaModel(cfg, attention_backend)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        # a buffer, not a parameter: derived from the config, never stored in the weights file
        self.register_buffer("inv_freq", rope_inv_freq(cfg.rope, cfg.head_dim), persistent=False)

    def forward(
        self,
        input_ids: torch.Tensor,   # [B, Q] int64
        positions: torch.Tensor,   # [B, Q] int64
        kv_cache: torch.Tensor,    # [L, 2, num_blocks, block_size, Hkv, D], written in place
        md: AttentionMetadata,
    ) -> torch.Tensor:             # [B, Q, hidden] after the final norm
        x = self.model.embed_tokens(input_ids)                                # [B, Q, H]
        freqs = positions.unsqueeze(-1).float() * self.inv_freq               # [B, Q, D/2]
        emb = torch.cat((freqs, freqs), dim=-1)                               # [B, Q, D]
        cos = emb.cos().to(x.dtype).unsqueeze(2)                              # [B, Q, 1, D]
        sin = emb.sin().to(x.dtype).unsqueeze(2)
        for layer in self.model.layers:
            x = layer(x, cos, sin, kv_cache, positions, md)
        return self.model.norm(x)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[N, hidden] -> [N, vocab] float32 logits."""
        return self.lm_head(hidden).float()


def kv_cache_shape(cfg: ModelConfig, num_blocks: int, block_size: int) -> tuple[int, ...]:
    return (cfg.num_hidden_layers, 2, num_blocks, block_size, cfg.num_key_value_heads, cfg.head_dim)
