"""Sequence: the scheduler's per-sequence state, plain Python and tensor-free.

A request with n > 1 owns n sequences that share its prompt; each sequence has its own output,
its own blocks and its own place in the queues.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.sampling_params import SamplingParams


class SequenceStatus(enum.Enum):
    WAITING = "waiting"      # queued, holds no blocks
    RUNNING = "running"      # holds blocks, scheduled every step it can be
    PREEMPTED = "preempted"  # lost its blocks when the cache ran out; queued to be recomputed
    FINISHED = "finished"    # done (stopped, hit a limit or aborted); holds no blocks


@dataclass(eq=False)  # identity equality: two sequences with the same tokens are still two sequences
class Sequence:
    """One generated continuation of a prompt, as the scheduler and the block manager see it."""

    seq_id: int                          # unique across the engine's lifetime
    req_id: str                          # the request this sequence belongs to
    prompt_token_ids: list[int]
    sampling_params: SamplingParams | None = None
    index: int = 0                       # position within the request's n outputs
    arrival_time: float = field(default_factory=time.time)
    status: SequenceStatus = SequenceStatus.WAITING
    num_computed_tokens: int = 0         # tokens whose K/V are in the cache
    num_cached_tokens: int = 0           # of those, how many came from the prefix cache at admission
    block_table: list[int] = field(default_factory=list)    # physical block of each logical block
    # hash chain of the sequence's full blocks; derived from content, so it survives preemption
    block_hashes: list[bytes] = field(default_factory=list)
    finish_reason: str | None = None     # "stop", "length" or "abort" once finished
    stop_reason: int | str | None = None  # the stop token id or stop string that ended it, if any
    use_prefix_cache: bool = True        # False: compute every prompt token (prompt logprobs need their logits)
    output_token_ids: list[int] = field(default_factory=list, init=False)
    all_token_ids: list[int] = field(init=False)  # prompt then output, the tokens the model computes over

    def __post_init__(self) -> None:
        self.prompt_token_ids = list(self.prompt_token_ids)
        self.all_token_ids = list(self.prompt_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.all_token_ids)

    @property
    def last_token_id(self) -> int:
        return self.all_token_ids[-1]

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def append_token(self, token_id: int) -> None:
        """Record one sampled token; its K/V is computed in the sequence's next step."""
        self.output_token_ids.append(token_id)
        self.all_token_ids.append(token_id)
