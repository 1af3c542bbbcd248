"""ModelConfig: what our Llama-family implementation needs from a Hugging Face config.json.

Accepts config.json as the hub writes it (`rope_theta` + `rope_scaling`) and as recent
transformers writes it (`rope_parameters`). Anything we cannot run faithfully is a ValueError
that says what is supported.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# architecture name -> family traits; the only place family differences are declared.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "LlamaForCausalLM": {"family": "llama", "qkv_bias": None, "qk_norm": False},
    "MistralForCausalLM": {"family": "mistral", "qkv_bias": False, "qk_norm": False},
    "Qwen2ForCausalLM": {"family": "qwen2", "qkv_bias": True, "qk_norm": False},
    "Qwen3ForCausalLM": {"family": "qwen3", "qkv_bias": None, "qk_norm": True},
}
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


@dataclass(frozen=True)
class RopeConfig:
    theta: float = 10000.0
    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    def __post_init__(self) -> None:
        if self.rope_type not in SUPPORTED_ROPE_TYPES:
            raise ValueError(
                f"rope_scaling type {self.rope_type!r} is not supported; supported types are "
                f"{', '.join(SUPPORTED_ROPE_TYPES)}."
            )


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    max_position_embeddings: int
    rope: RopeConfig = field(default_factory=RopeConfig)
    tie_word_embeddings: bool = False
    qkv_bias: bool = False   # bias on q/k/v projections (Qwen2 always; Llama when attention_bias)
    o_bias: bool = False     # bias on o_proj (Llama attention_bias)
    mlp_bias: bool = False
    qk_norm: bool = False    # per-head RMSNorm on q and k (Qwen3)
    sliding_window: int | None = None  # Mistral: keys older than this many positions are invisible

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture {self.architecture!r} is not supported; supported architectures are "
                f"{', '.join(ARCHITECTURES)}."
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})."
            )

    @property
    def family(self) -> str:
        return ARCHITECTURES[self.architecture]["family"]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ModelConfig":
        archs = raw.get("architectures") or []
        arch = next((a for a in archs if a in ARCHITECTURES), archs[0] if archs else raw.get("model_type", "?"))
        if arch not in ARCHITECTURES:
            raise ValueError(
                f"architecture {arch!r} is not supported; supported architectures are {', '.join(ARCHITECTURES)}."
            )
        traits = ARCHITECTURES[arch]
        heads = raw["num_attention_heads"]
        attention_bias = bool(raw.get("attention_bias", False))
        qkv_bias = attention_bias if traits["qkv_bias"] is None else traits["qkv_bias"]
        if raw.get("use_sliding_window") and traits["family"] == "qwen2":
            raise ValueError("Qwen2 checkpoints with use_sliding_window=true are not supported; set it to false.")
        sliding = raw.get("sliding_window") if traits["family"] == "mistral" else None
        return cls(
            architecture=arch,
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            num_hidden_layers=raw["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=raw.get("num_key_value_heads") or heads,
            head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
            rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
            max_position_embeddings=raw.get("max_position_embeddings", 2048),
            rope=_rope_from_dict(raw),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            qkv_bias=qkv_bias,
            o_bias=attention_bias and traits["family"] in ("llama", "qwen3"),
            mlp_bias=bool(raw.get("mlp_bias", False)),
            qk_norm=traits["qk_norm"],
            sliding_window=sliding,
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> "ModelConfig":
        file = Path(path) / "config.json"
        if not file.is_file():
            raise ValueError(f"{path} has no config.json; point to a Hugging Face checkpoint directory.")
        return cls.from_dict(json.loads(file.read_text()))


def _rope_from_dict(raw: dict[str, Any]) -> RopeConfig:
    # transformers >= 5 writes rope_parameters (theta inside); the hub's files use rope_theta + rope_scaling.
    params = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    theta = params.get("rope_theta", raw.get("rope_theta", 10000.0))
    rope_type = params.get("rope_type", params.get("type", "default"))
    kwargs = {k: params[k] for k in ("factor", "low_freq_factor", "high_freq_factor") if k in params}
    if "original_max_position_embeddings" in params:
        kwargs["original_max_position_embeddings"] = int(params["original_max_position_embeddings"])
    return RopeConfig(theta=float(theta), rope_type=rope_type, **kwargs)
