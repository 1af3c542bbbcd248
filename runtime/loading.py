"""runtime.load: turn a path into a ready LLMEngine.

An artifact directory (manifest.json) is loaded as compiled graphs. A Hugging Face checkpoint
directory (config.json) is built once into an artifact cached under EngineOptions.compile_cache_dir
and loaded like any other, or, with enforce_eager, run through the compile stage's nn.Module:
the one sanctioned place where the runtime reaches into compile/.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from runtime.config import DEFAULT_MAX_NUM_SEQS, EngineOptions, size_kv_cache
from runtime.engine import LLMEngine, ModelInfo
from runtime.runner import EagerExecutor
from runtime.scheduler import SchedulerConfig
from runtime.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


def load(path: str | Path, options: EngineOptions | None = None, **overrides) -> LLMEngine:
    """Load an artifact or a Hugging Face checkpoint directory; keyword overrides set EngineOptions fields."""
    options = options or EngineOptions(**overrides)
    path = Path(path)
    if (path / "manifest.json").is_file():
        from runtime.artifact_loader import load_artifact_engine
        return load_artifact_engine(path, options)
    if (path / "config.json").is_file():
        if options.enforce_eager:
            return load_checkpoint_eager(path, options)
        from compile.build_cache import cached_build
        from runtime.artifact_loader import load_artifact_engine
        return load_artifact_engine(cached_build(path, options), options)
    if not path.exists():
        raise ValueError(f"{path} does not exist; pass an artifact directory or a Hugging Face checkpoint directory.")
    raise ValueError(f"{path} is neither an artifact (no manifest.json) nor a Hugging Face checkpoint (no config.json); "
                     "pass a directory built by gaudi-compile build, or a checkpoint directory.")


def checkpoint_dtype(path: Path, requested: str) -> str:
    """'auto' means the checkpoint's own dtype where the CPU runs it well, else float32."""
    if requested != "auto":
        return requested
    raw = json.loads((path / "config.json").read_text())
    dtype = raw.get("torch_dtype") or raw.get("dtype") or "float32"
    return dtype if dtype in ("float32", "bfloat16") else "float32"


def scheduler_config(options: EngineOptions, max_model_len: int, bytes_per_block: int,
                     max_batched_cap: int | None = None) -> SchedulerConfig:
    if options.max_model_len is not None:
        if options.max_model_len > max_model_len:
            raise ValueError(f"max_model_len {options.max_model_len} exceeds the model's limit of {max_model_len}; "
                             "lower it.")
        max_model_len = options.max_model_len
    batched = options.max_num_batched_tokens or min(2048, max_batched_cap or 2048)
    max_num_seqs = options.max_num_seqs or DEFAULT_MAX_NUM_SEQS
    return SchedulerConfig(max_model_len=max_model_len, block_size=options.block_size,
                           num_blocks=size_kv_cache(options, bytes_per_block, max_model_len),
                           max_num_seqs=max_num_seqs, max_num_batched_tokens=max(batched, max_num_seqs),
                           enable_prefix_caching=options.enable_prefix_caching)


def load_checkpoint_eager(path: Path, options: EngineOptions) -> LLMEngine:
    from compile.models.llama import kv_cache_shape
    from compile.models.loader import load_generation_defaults, load_model

    start = time.perf_counter()
    dtype = checkpoint_dtype(path, options.dtype)
    model = load_model(path, dtype)
    cfg = model.config
    tokenizer = Tokenizer.from_dir(path)
    eos = tuple(load_generation_defaults(path).eos_token_ids) or tuple(tokenizer.eos_token_ids)
    param = next(model.parameters())
    bytes_per_block = 2 * cfg.num_hidden_layers * options.block_size * cfg.num_key_value_heads * cfg.head_dim \
        * param.element_size()
    sched = scheduler_config(options, cfg.max_position_embeddings, bytes_per_block)
    kv_cache = torch.zeros(kv_cache_shape(cfg, sched.num_blocks, options.block_size), dtype=param.dtype)
    info = ModelInfo(name=str(path), vocab_size=cfg.vocab_size, max_model_len=sched.max_model_len, eos_token_ids=eos)
    engine = LLMEngine(EagerExecutor(model, options.block_size), kv_cache, tokenizer, info, sched, options.seed)
    logger.info("loaded %s eagerly (%s, %d KV blocks) in %.2fs", path, dtype, sched.num_blocks,
                time.perf_counter() - start)
    return engine
