"""Tiny random checkpoints of every supported family, written as the Hugging Face hub writes them.

transformers builds the config and the randomly initialised model (seeded), saves it with
safetensors; a byte-level BPE trained locally provides the tokenizer. Nothing is downloaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

# family -> (transformers config class name, tokenizer family, config overrides)
FAMILIES: dict[str, tuple[str, str, dict]] = {
    "llama2": ("LlamaConfig", "llama2", {}),
    "llama3": ("LlamaConfig", "llama3", {
        "num_key_value_heads": 2,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "rope_theta": 500000.0,
    }),
    # Llama 3.2 style: tied embeddings and a head_dim that differs from hidden / heads
    "llama3.2": ("LlamaConfig", "llama3", {"num_key_value_heads": 2, "tie_word_embeddings": True, "head_dim": 32}),
    "mistral": ("MistralConfig", "mistral", {"num_key_value_heads": 1, "sliding_window": 4096}),
    "qwen2": ("Qwen2Config", "qwen2", {"num_key_value_heads": 2, "tie_word_embeddings": True}),
    "qwen3": ("Qwen3Config", "qwen3", {"num_key_value_heads": 2, "head_dim": 24}),
}

ARCH = {"LlamaConfig": "LlamaForCausalLM", "MistralConfig": "MistralForCausalLM",
        "Qwen2Config": "Qwen2ForCausalLM", "Qwen3Config": "Qwen3ForCausalLM"}


def make_checkpoint(path: str | Path, family: str = "llama3", *, seed: int = 0, dtype: torch.dtype = torch.float32,
                    hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, intermediate_size: int = 128,
                    max_position_embeddings: int = 2048, with_tokenizer: bool = True, **overrides) -> Path:
    """Write a tiny random checkpoint of `family` into `path` and return the path."""
    import transformers

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config_cls_name, tok_family, family_overrides = FAMILIES[family]
    if with_tokenizer:
        from tests.tokenizer_factory import train_tokenizer
        special = train_tokenizer(path, tok_family)
    else:
        special = {"vocab_size": 512}
    vocab_size = -(-special["vocab_size"] // 64) * 64
    kwargs = dict(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, max_position_embeddings=max_position_embeddings,
        # a wide init gives peaked next-token distributions, so greedy parity is not decided by float noise
        initializer_range=0.15,
        bos_token_id=special.get("bos_token_id"), eos_token_id=special.get("eos_token_id"),
        pad_token_id=special.get("pad_token_id"),
    )
    kwargs.update(family_overrides)
    kwargs.update(overrides)
    config = getattr(transformers, config_cls_name)(**kwargs)
    config.architectures = [ARCH[config_cls_name]]
    torch.manual_seed(seed)
    model = getattr(transformers, ARCH[config_cls_name])(config).to(dtype)
    model.save_pretrained(path, safe_serialization=True)
    gen = {"bos_token_id": special.get("bos_token_id"), "eos_token_id": special.get("eos_token_id")}
    if special.get("extra_eos_token_ids"):
        gen["eos_token_id"] = [special["eos_token_id"], *special["extra_eos_token_ids"]]
    (path / "generation_config.json").write_text(json.dumps(gen, indent=2))
    return path
