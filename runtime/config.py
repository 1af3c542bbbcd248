"""EngineOptions: how the runtime runs a model (batch limits, KV cache, seed), validated up front."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_KV_CACHE_BYTES = 4 << 30   # as vLLM's CPU backend: 4 GiB of KV cache unless told otherwise
DEFAULT_MAX_NUM_SEQS = 256         # vLLM's default, for checkpoints run eagerly


@dataclass(frozen=True)
class EngineOptions:
    dtype: str = "auto"                        # eager checkpoints only; an artifact carries its own dtype
    max_model_len: int | None = None           # None: the model's (or artifact's) own limit
    max_num_seqs: int | None = None            # None: the artifact's largest decode batch (256 when eager)
    max_num_batched_tokens: int | None = None  # None: 2048, or the artifact's largest prefill bucket
    block_size: int = 16
    num_kv_blocks: int | None = None           # None: sized from kv_cache_memory_bytes
    kv_cache_memory_bytes: int = DEFAULT_KV_CACHE_BYTES
    seed: int | None = 0
    enable_prefix_caching: bool = True
    enforce_eager: bool = False                # checkpoints only: run the nn.Module instead of building graphs
    compile_cache_dir: str | None = None       # checkpoints only: where built artifacts are cached
                                               # (None: ~/.cache/gaudi-aot)

    def __post_init__(self) -> None:
        for name in ("max_model_len", "max_num_batched_tokens", "num_kv_blocks", "max_num_seqs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}.")
        for name in ("block_size", "kv_cache_memory_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}.")


def size_kv_cache(options: EngineOptions, bytes_per_block: int, max_model_len: int) -> int:
    """Blocks to allocate (including the null block): enough for max_num_seqs full-length
    sequences, capped by the memory budget, and never fewer than one full-length sequence needs."""
    if options.num_kv_blocks is not None:
        return options.num_kv_blocks
    per_seq = -(-max_model_len // options.block_size)
    wanted = 1 + (options.max_num_seqs or DEFAULT_MAX_NUM_SEQS) * per_seq
    budget = options.kv_cache_memory_bytes // bytes_per_block
    if budget < 1 + per_seq:
        raise ValueError(
            f"a KV cache of {options.kv_cache_memory_bytes} bytes cannot hold one sequence of {max_model_len} "
            "tokens; raise the KV cache memory or lower max_model_len."
        )
    return min(wanted, budget)
