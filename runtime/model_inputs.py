"""Turn one step's rows (tokens, start position, block table) into padded model input tensors.

The runner pads every step up to a bucket shape (batch, query_len, num_blocks); padding follows
the null-block rules of AttentionMetadata so padded tokens never touch a real sequence.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from runtime.attention_metadata import AttentionMetadata


@dataclass(frozen=True)
class StepRow:
    """One sequence's share of a step."""
    token_ids: list[int]      # tokens to compute now (a prompt chunk, or the last sampled token)
    start_pos: int            # tokens of this sequence already in the cache
    block_table: list[int]    # the sequence's blocks, covering start_pos + len(token_ids) tokens


@dataclass
class ModelInputs:
    input_ids: torch.Tensor       # [B, Q] int64
    positions: torch.Tensor       # [B, Q] int64
    md: AttentionMetadata
    last_indices: torch.Tensor    # [num_rows] int64: flat index (b * Q + q) of each real row's last token

    def as_args(self, kv_cache: torch.Tensor) -> tuple:
        return (self.input_ids, self.positions, kv_cache, self.md)


def build_model_inputs(rows: list[StepRow], block_size: int, batch_size: int | None = None,
                       query_len: int | None = None, num_blocks: int | None = None) -> ModelInputs:
    """Pad `rows` to [batch_size, query_len] tokens and [batch_size, num_blocks] block tables.

    Example: rows of 3 and 1 tokens padded to batch 4, query 4: input_ids has shape [4, 4], rows 2-3
    are padding (seq_len 1, position 0, slot 0) and last_indices is [2, 4].
    """
    batch_size = batch_size or len(rows)
    query_len = query_len or max(len(r.token_ids) for r in rows)
    num_blocks = num_blocks or max(len(r.block_table) for r in rows)
    if len(rows) > batch_size or any(len(r.token_ids) > query_len or len(r.block_table) > num_blocks for r in rows):
        raise ValueError("step does not fit the bucket it was assigned; this is a bug in bucket selection")
    # plain lists first, one tensor per input at the end: this runs every step
    input_ids = [[0] * query_len for _ in range(batch_size)]
    positions = [[0] * query_len for _ in range(batch_size)]
    slots = [[0] * query_len for _ in range(batch_size)]
    tables = [[0] * num_blocks for _ in range(batch_size)]
    seq_lens = [1] * batch_size
    last = []
    for b, row in enumerate(rows):
        n, table = len(row.token_ids), row.block_table
        input_ids[b][:n] = row.token_ids
        positions[b][:n] = range(row.start_pos, row.start_pos + n)
        slots[b][:n] = [table[p // block_size] * block_size + p % block_size
                        for p in range(row.start_pos, row.start_pos + n)]
        tables[b][: len(table)] = table
        seq_lens[b] = row.start_pos + n
        last.append(b * query_len + n - 1)
    input_ids, positions, slots, tables, seq_lens = (
        torch.tensor(x, dtype=torch.int64) for x in (input_ids, positions, slots, tables, seq_lens))
    md = AttentionMetadata(slot_mapping=slots, block_tables=tables, seq_lens=seq_lens)
    return ModelInputs(input_ids, positions, md, torch.tensor(last, dtype=torch.int64))
