"""AttentionMetadata: every per-step input the attention needs besides q/k/v, passed explicitly.

A traced static graph needs its inputs as arguments; this dataclass is shared by the runner that
fills it and the model that reads it. Block 0 of the KV cache is the null block: padding tokens
write their K/V to slot 0 and padded block-table entries are 0, so padding never touches a
sequence's blocks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor   # [B, Q] int64: cache slot (block_id * block_size + offset) of each new token
    block_tables: torch.Tensor   # [B, M] int64: the blocks of each sequence, in order; 0-padded
    seq_lens: torch.Tensor       # [B] int64: tokens in each sequence's context after this step (1 for padded rows)


# torch.export flattens AttentionMetadata like a tuple of its three tensors.
torch.export.register_dataclass(AttentionMetadata, serialized_type_name="runtime.AttentionMetadata")
