"""The default model's sizes: Llama 3 style shapes from a few M to ~200M parameters, and building one.

Llama 3 style means grouped-query attention, SwiGLU MLP, RMSNorm and RoPE with theta 500000,
written in transformers' LlamaForCausalLM so that the checkpoint is a plain Hugging Face one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModelShape:
    """Architecture of one default size (Llama 3 style: GQA, SwiGLU, RMSNorm, rope theta 500000)."""

    vocab_size: int          # tokenizer ids, special tokens included; also the embedding rows
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}.")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads}.")

    @property
    def num_parameters(self) -> int:
        """Parameter count, a shared embedding counted once."""
        head_dim = self.hidden_size // self.num_heads
        attention = 2 * self.hidden_size * head_dim * (self.num_heads + self.num_kv_heads)  # q, o + k, v
        layer = attention + 3 * self.hidden_size * self.intermediate_size + 2 * self.hidden_size  # + 2 norms
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return embeddings + self.num_layers * layer + self.hidden_size  # + final norm


# tiny keeps its output layer separate from the embedding: at this size the untied model learns about twice as
# fast for the same compute (the lm_head costs the same either way). The benchmark sizes tie, as Llama 3.2 does.
SIZES: dict[str, ModelShape] = {
    "tiny": ModelShape(vocab_size=4096, hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
                       intermediate_size=384, max_position_embeddings=1024, tie_word_embeddings=False),
    "30m": ModelShape(vocab_size=8192, hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=4,
                      intermediate_size=1536, max_position_embeddings=2048, tie_word_embeddings=True),
    "200m": ModelShape(vocab_size=8192, hidden_size=1024, num_layers=16, num_heads=16, num_kv_heads=8,
                       intermediate_size=2816, max_position_embeddings=4096, tie_word_embeddings=True),
}


def make_model(shape: ModelShape, bos_token_id: int, eos_token_ids: list[int], seed: int):
    """A transformers LlamaForCausalLM of `shape` in eval mode, initialised from `seed`."""
    import transformers
    config = transformers.LlamaConfig(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads, max_position_embeddings=shape.max_position_embeddings,
        rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=shape.tie_word_embeddings,
        bos_token_id=bos_token_id, eos_token_id=list(eos_token_ids))
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config).eval()
