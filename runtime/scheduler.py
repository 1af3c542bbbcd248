"""Scheduler: decides, each step, which sequences compute which tokens. Ids only, no tensors.

Design note.
- Continuous batching: sequences join (add) and leave (finish, abort) between steps. A step holds
  at most max_num_seqs sequences and max_num_batched_tokens tokens.
- A step is either all-prefill or all-decode, never mixed. Our graphs are compiled per static
  bucket, prefill(batch, query_len, ctx_blocks) or decode(batch, num_blocks); a mixed step would
  pad every decode row up to the longest prompt chunk (or need a third bucket family), wasting
  compute. Prefill goes first, as in vLLM's V0 default: if any prompt work can be scheduled, the
  step is a prefill step; otherwise every running sequence decodes one token.
- Prefill steps take running sequences with more than one uncomputed token first (chunked prompts
  in progress, oldest first), then admit waiting sequences first come, first served. A prompt
  longer than the budget that is left is cut into chunks; a chunk that does not reach the end of
  the sequence's known tokens is not sampled.
- A sequence is one "decode" row when exactly one of its tokens is uncomputed (the token sampled
  last step). Both kinds of row are the same computation: tokens[start:start+Q] at positions
  start..start+Q-1, attending to everything before them in the cache.
- When blocks run out, the newest running sequence is preempted: its blocks are freed, its
  computed count reset, and it goes to the front of the waiting queue, to be recomputed later over
  prompt + generated tokens (its own freed blocks often still sit in the prefix cache). No new
  sequence is admitted in a step that had to preempt.
- Nothing depends on time, hashing order or sets: the same calls give the same steps.

One step, driven by the engine:
    out = scheduler.schedule()                       # SchedulerOutput
    sampled = runner_and_sampler(out)                # {seq_id: token_id} for rows with is_sampled
    for seq in scheduler.update_from_output(out, sampled):
        if <stop condition>: scheduler.finish(seq, "stop" or "length")
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from runtime.kv_cache import BlockManager, slot_ids
from runtime.sequence import Sequence, SequenceStatus


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    """Limits of one scheduling step and the shape of the KV cache."""

    max_model_len: int                   # most tokens (prompt + output) one sequence may hold
    block_size: int                      # tokens per KV-cache block
    num_blocks: int                      # KV-cache blocks, including the reserved NULL block 0
    max_num_seqs: int = 256              # most sequences in one step (and running at once)
    max_num_batched_tokens: int = 2048   # most tokens computed in one step
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True

    def __post_init__(self) -> None:
        for name in ("max_model_len", "block_size", "max_num_seqs", "max_num_batched_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} is {getattr(self, name)}; set it to a positive number.")
        if self.num_blocks < 2:
            raise ValueError(f"num_blocks is {self.num_blocks}, but the KV cache needs at least 2 blocks "
                             "(block 0 is reserved for padding); give the cache more memory.")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(f"max_num_batched_tokens ({self.max_num_batched_tokens}) is below max_num_seqs "
                             f"({self.max_num_seqs}), so a full batch could not decode in one step; raise "
                             "max_num_batched_tokens or lower max_num_seqs.")
        if not self.enable_chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError(f"max_num_batched_tokens ({self.max_num_batched_tokens}) is below max_model_len "
                             f"({self.max_model_len}) with chunked prefill off, so a long prompt could never "
                             "be scheduled; enable chunked prefill or raise max_num_batched_tokens.")
        capacity = (self.num_blocks - 1) * self.block_size
        if capacity < self.max_model_len:
            raise ValueError(f"The KV cache holds {capacity} tokens, fewer than max_model_len "
                             f"({self.max_model_len}); lower max_model_len or give the cache more blocks.")


@dataclass
class ScheduledSequence:
    """One row of a step: what the runner computes for one sequence."""

    seq_id: int
    token_ids: list[int]      # [Q] tokens to compute now: a prompt chunk, or the token sampled last step
    start_pos: int            # num_computed_tokens before the step; positions are start_pos..start_pos+Q-1
    block_table: list[int]    # [num_blocks] physical blocks in logical order, covering seq_len tokens
    slot_ids: list[int]       # [Q] cache slot each new token's K/V is written to (block * block_size + offset)
    is_sampled: bool          # the chunk reaches the end of the known tokens: sample a token from its last row

    @property
    def seq_len(self) -> int:
        """Tokens in the sequence's context after this step: start_pos + Q."""
        return self.start_pos + len(self.token_ids)

    @property
    def positions(self) -> list[int]:
        """[Q] absolute position of each new token."""
        return list(range(self.start_pos, self.seq_len))


@dataclass
class SchedulerOutput:
    """One step's plan, consumed by the runner and handed back to update_from_output."""

    is_prefill: bool                         # bucket family: prefill rows (Q >= 1) or decode rows (Q == 1)
    scheduled_seqs: list[ScheduledSequence]  # [B] rows in batch order; empty means nothing to run
    num_scheduled_tokens: int                # sum of Q over the rows, <= max_num_batched_tokens
    # lost their blocks this step and went back to the waiting queue
    preempted_seq_ids: list[int] = field(default_factory=list)
    # finished or aborted since the previous step: drop any per-sequence state kept for them
    finished_seq_ids: list[int] = field(default_factory=list)


class Scheduler:
    """Continuous-batching scheduler over a paged KV cache with prefix caching and preemption."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.block_manager = BlockManager(config.num_blocks, config.block_size, config.enable_prefix_caching)
        self.waiting: deque[Sequence] = deque()  # first in, first admitted; preempted sequences go to the front
        self.running: list[Sequence] = []        # admission order: the last one is preempted first
        self._seqs: dict[int, Sequence] = {}     # every unfinished sequence by seq_id
        self._finished_seq_ids: list[int] = []

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def has_unfinished_seqs(self) -> bool:
        return bool(self._seqs)

    def get_sequence(self, seq_id: int) -> Sequence:
        """The unfinished sequence with this id (KeyError if unknown or finished)."""
        return self._seqs[seq_id]

    def add(self, seq: Sequence) -> None:
        """Queue a new sequence; it joins the batch at a coming step."""
        if seq.seq_id in self._seqs:
            raise ValueError(f"sequence id {seq.seq_id} is already scheduled; give each sequence a new id.")
        if seq.status is not SequenceStatus.WAITING or seq.block_table:
            raise ValueError(f"sequence {seq.seq_id} is {seq.status.value}; only new sequences can be added.")
        if not 0 < seq.num_tokens <= self.config.max_model_len:
            raise ValueError(f"sequence {seq.seq_id} has {seq.num_tokens} tokens; a prompt needs between 1 and "
                             f"max_model_len ({self.config.max_model_len}) tokens.")
        self._seqs[seq.seq_id] = seq
        self.waiting.append(seq)

    def schedule(self) -> SchedulerOutput:
        """Plan one step: reserve cache slots and say which tokens each scheduled sequence computes."""
        preempted: list[Sequence] = []
        rows = self._schedule_prefill(preempted)
        is_prefill = bool(rows)
        if not rows:
            rows = self._schedule_decode(preempted)
        scheduled = [self._describe(seq, num_new) for seq, num_new in rows]
        out = SchedulerOutput(is_prefill=is_prefill, scheduled_seqs=scheduled,
                              num_scheduled_tokens=sum(num_new for _, num_new in rows),
                              preempted_seq_ids=[seq.seq_id for seq in preempted],
                              finished_seq_ids=self._finished_seq_ids)
        self._finished_seq_ids = []
        return out

    def update_from_output(self, output: SchedulerOutput, sampled_token_ids: dict[int, int]) -> list[Sequence]:
        """Account for a step the runner computed; returns the sequences that got a token, in batch order.

        sampled_token_ids maps seq_id -> token for every row with is_sampled. Call exactly once per
        schedule(). The caller checks stop conditions on the returned sequences and calls finish().
        """
        progressed = []
        for row in output.scheduled_seqs:
            seq = self._seqs.get(row.seq_id)
            if seq is None or seq.status is not SequenceStatus.RUNNING:
                continue  # aborted after it was scheduled
            seq.num_computed_tokens += len(row.token_ids)
            self.block_manager.cache_full_blocks(seq)
            if row.is_sampled:
                seq.append_token(sampled_token_ids[row.seq_id])
                progressed.append(seq)
        return progressed

    def finish(self, seq: Sequence, finish_reason: str, stop_reason: int | str | None = None) -> None:
        """End a sequence and free its blocks at once."""
        if seq.status is SequenceStatus.FINISHED:
            return
        self.block_manager.free(seq)
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        else:
            self.waiting.remove(seq)
        seq.status, seq.finish_reason, seq.stop_reason = SequenceStatus.FINISHED, finish_reason, stop_reason
        del self._seqs[seq.seq_id]
        self._finished_seq_ids.append(seq.seq_id)

    def abort(self, req_id: str) -> list[Sequence]:
        """Finish every sequence of a request with finish_reason "abort"; returns them."""
        aborted = [seq for seq in self._seqs.values() if seq.req_id == req_id]
        for seq in aborted:
            self.finish(seq, "abort")
        return aborted

    def _schedule_prefill(self, preempted: list[Sequence]) -> list[tuple[Sequence, int]]:
        cfg, blocks = self.config, self.block_manager
        budget = cfg.max_num_batched_tokens
        rows: list[tuple[Sequence, int]] = []
        i = 0
        while i < len(self.running) and budget > 0:  # chunked prompts (or recomputations) in progress
            seq = self.running[i]
            num_left = seq.num_tokens - seq.num_computed_tokens
            if num_left > 1:
                num_new = min(num_left, budget)
                if not self._reserve(seq, num_new, preempted):
                    break
                rows.append((seq, num_new))
                budget -= num_new
            i += 1
        while self.waiting and not preempted and budget > 0 and len(self.running) < cfg.max_num_seqs:
            seq = self.waiting[0]
            num_left = seq.num_tokens - blocks.get_num_cached_tokens(seq)
            if num_left > budget and not cfg.enable_chunked_prefill:
                break
            num_new = min(num_left, budget)
            if not blocks.can_allocate(seq, num_new):
                break
            blocks.allocate(seq, num_new)
            self.waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            rows.append((seq, num_new))
            budget -= num_new
        return rows

    def _schedule_decode(self, preempted: list[Sequence]) -> list[tuple[Sequence, int]]:
        rows: list[tuple[Sequence, int]] = []
        i = 0
        while i < len(self.running):
            seq = self.running[i]
            assert seq.num_tokens - seq.num_computed_tokens == 1, "a decode row computes exactly one token"
            if not self._reserve(seq, 1, preempted):
                break
            rows.append((seq, 1))
            i += 1
        return rows

    def _reserve(self, seq: Sequence, num_new: int, preempted: list[Sequence]) -> bool:
        """Get slots for `seq`, preempting the newest running sequences; False if `seq` itself went."""
        while not self.block_manager.can_append(seq, num_new):
            victim = self.running.pop()
            self._preempt(victim)
            preempted.append(victim)
            if victim is seq:
                return False
        self.block_manager.append_slots(seq, num_new)
        return True

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.free(seq)
        seq.num_computed_tokens = seq.num_cached_tokens = 0
        seq.status = SequenceStatus.PREEMPTED
        self.waiting.appendleft(seq)

    def _describe(self, seq: Sequence, num_new: int) -> ScheduledSequence:
        start = seq.num_computed_tokens
        end = start + num_new
        return ScheduledSequence(seq_id=seq.seq_id, token_ids=seq.all_token_ids[start:end], start_pos=start,
                                 block_table=list(seq.block_table),
                                 slot_ids=slot_ids(seq.block_table, self.block_manager.block_size, start, num_new),
                                 is_sampled=end == seq.num_tokens)
