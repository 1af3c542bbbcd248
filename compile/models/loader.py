"""Load a Hugging Face checkpoint directory into our model.

Reads config.json, model.safetensors or a sharded set (model.safetensors.index.json), and
generation_config.json. Weights in bf16/fp16/fp32 are cast to the requested dtype. A missing file
or tensor is a ValueError naming it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from compile.models.config import ModelConfig
from compile.models.llama import LlamaForCausalLM, rope_inv_freq

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# tensors some checkpoints carry that our model derives instead
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    aliases = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    key = aliases.get(name, name)
    if key not in DTYPES:
        raise ValueError(f"dtype {name!r} is not supported; use one of {', '.join(DTYPES)}.")
    return DTYPES[key]


@dataclass(frozen=True)
class GenerationDefaults:
    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None


def weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise ValueError(f"{path} is missing weight shard(s) {', '.join(missing)} listed in its index.")
        return [path / s for s in shards]
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    raise ValueError(f"{path} has no model.safetensors or model.safetensors.index.json; save the model with safetensors.")


def read_state_dict(path: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(path):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                if not name.endswith(_IGNORED_SUFFIXES):
                    state[name] = f.get_tensor(name).to(dtype)
    return state


def load_generation_defaults(path: Path) -> GenerationDefaults:
    eos: list[int] = []
    bos = None
    for name in ("config.json", "generation_config.json"):  # generation_config wins
        file = path / name
        if file.is_file():
            raw = json.loads(file.read_text())
            if raw.get("eos_token_id") is not None:
                value = raw["eos_token_id"]
                eos = list(value) if isinstance(value, list) else [value]
            bos = raw.get("bos_token_id", bos)
    return GenerationDefaults(eos_token_ids=tuple(eos), bos_token_id=bos)


def load_model(path: str | Path, dtype: str | torch.dtype = "float32", attention_backend: str = "sdpa") -> LlamaForCausalLM:
    """Build our model from a checkpoint directory, weights cast to `dtype`, in eval mode."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory; pass a Hugging Face checkpoint directory.")
    cfg = ModelConfig.from_dir(path)
    torch_dtype = parse_dtype(dtype)
    state = read_state_dict(path, torch_dtype)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg, attention_backend)
    expected = set(model.state_dict().keys())
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
        expected.discard("lm_head.weight")
    missing = sorted(expected - state.keys())
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"checkpoint {path} is missing tensor(s) {shown}; is it a complete {cfg.architecture} checkpoint?")
    unexpected = sorted(state.keys() - expected)
    if unexpected:
        raise ValueError(f"checkpoint {path} has tensor(s) our {cfg.architecture} does not use: {', '.join(unexpected[:5])}.")
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    # built on the meta device above; derive the real RoPE frequencies now
    model.register_buffer("inv_freq", rope_inv_freq(cfg.rope, cfg.head_dim), persistent=False)
    return model.eval().requires_grad_(False)
