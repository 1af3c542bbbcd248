"""Tracing: one bucket's static shapes -> a torch.export ExportedProgram of the model's forward.

Every input is static except the KV cache's num_blocks dimension: the runtime sizes the cache at
start-up from its memory budget, after the graphs were built, so the graphs take any number of
blocks (at least 2: block 0 is the null block). The example values follow the padding rules
(positions 0, slots 0, block tables 0, seq_lens 1), so tracing never reads outside the cache.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect

import torch

from runtime.attention_metadata import AttentionMetadata
from runtime.buckets import Bucket

# the modules whose source decides what a traced graph computes; their hash keys incremental rebuilds
TRACED_MODULES = ("compile.models.llama", "compile.models.attention", "compile.models.config",
                  "compile.models.loader", "compile.trace", "runtime.attention_metadata",
                  "compile.models.fp8_linear")
# any example value other than 0 or 1 would do: torch.export specialises dimensions of size 0 and 1
_EXAMPLE_NUM_BLOCKS = 17


def example_inputs(model: torch.nn.Module, bucket: Bucket, block_size: int, device: torch.device) -> tuple:
    """(input_ids, positions, kv_cache, AttentionMetadata) of the bucket's shape, all padding."""
    from compile.eager_runs import kv_cache_dtype

    cfg = model.config
    dtype = kv_cache_dtype(model)   # the build dtype, or float8_e4m3fn for an FP8 KV cache
    batch, query_len, num_blocks = bucket.shape

    def ints(*shape: int, fill: int = 0) -> torch.Tensor:
        return torch.full(shape, fill, dtype=torch.int64, device=device)

    kv_cache = torch.zeros(cfg.num_hidden_layers, 2, _EXAMPLE_NUM_BLOCKS, block_size, cfg.num_key_value_heads,
                           cfg.head_dim, dtype=dtype, device=device)   # [L, 2, NB, BS, Hkv, D]
    md = AttentionMetadata(slot_mapping=ints(batch, query_len), block_tables=ints(batch, num_blocks),
                           seq_lens=ints(batch, fill=1))
    return ints(batch, query_len), ints(batch, query_len), kv_cache, md


def export_bucket(model: torch.nn.Module, bucket: Bucket, block_size: int,
                  device: torch.device = torch.device("cpu")) -> torch.export.ExportedProgram:
    """Trace `model.forward` at the bucket's shapes; weights are lifted under their Hugging Face FQNs."""
    args = example_inputs(model, bucket, block_size, device)
    num_blocks = torch.export.Dim("num_blocks", min=2)
    # one entry per forward argument; AttentionMetadata's three tensors stay static
    dynamic_shapes = (None, None, {2: num_blocks}, [None, None, None])
    with torch.no_grad():
        return torch.export.export(model, args, dynamic_shapes=dynamic_shapes, strict=False)


def code_version(extra_modules: tuple[str, ...] = ()) -> str:
    """sha256 of the source of every module that shapes a graph (model, attention, tracing, target)."""
    digest = hashlib.sha256()
    for name in dict.fromkeys(TRACED_MODULES + extra_modules):   # each module once, in order
        digest.update(name.encode())
        digest.update(inspect.getsource(importlib.import_module(name)).encode())
    return digest.hexdigest()
