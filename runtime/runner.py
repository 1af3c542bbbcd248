"""ModelRunner: executes one scheduled step and returns next-token logits.

The runner is the seam between the engine and whatever runs the model: an eager nn.Module or
compiled per-bucket graphs. An `Executor` decides how a step is cut into padded shapes and runs
one shape; the runner builds the inputs, gathers each row's last hidden state, applies the LM head
and counts, per shape, how often it ran and how many padded tokens it computed.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import torch

from runtime.model_inputs import ModelInputs, StepRow, build_model_inputs

Shape = tuple[int, int, int]   # (batch, query_len, num_blocks) a step is padded to


@dataclass
class Launch:
    """One padded forward: which original rows (or row chunks) it carries and the shape it is padded to."""
    row_ids: list[int]        # index into the step's rows, one per chunk below
    chunks: list[StepRow]     # the rows (or consecutive chunks of a row) computed in this launch
    shape: Shape | None       # None: run at the exact size (eager)
    name: str = "eager"       # bucket name, for counters and logs


class Executor(Protocol):
    block_size: int

    def plan(self, rows: list[StepRow], is_prefill: bool) -> list[Launch]:
        """Cut a step into launches; a row's chunks appear in order, across launches."""

    def forward(self, inputs: ModelInputs, launch: Launch, kv_cache: torch.Tensor) -> torch.Tensor:
        """[B, Q, hidden] final hidden states for the padded inputs; writes K/V into kv_cache."""

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[N, hidden] -> [N, vocab] float32."""


@dataclass
class RunnerOutput:
    logits: torch.Tensor                                   # [num_rows, vocab] float32: each row's last token
    prompt_logits: dict[int, torch.Tensor] = field(default_factory=dict)  # row -> [num_tokens, vocab] when asked


@dataclass
class LaunchStats:
    runs: Counter = field(default_factory=Counter)             # launch name -> times run
    padded_tokens: Counter = field(default_factory=Counter)    # launch name -> padding tokens computed
    real_tokens: Counter = field(default_factory=Counter)      # launch name -> real tokens computed


class ModelRunner:
    def __init__(self, executor: Executor, kv_cache: torch.Tensor):
        self.executor = executor
        self.kv_cache = kv_cache   # [L, 2, num_blocks, block_size, Hkv, D]
        self.stats = LaunchStats()

    @torch.inference_mode()
    def execute(self, rows: list[StepRow], is_prefill: bool, prompt_logits_rows: set[int] = frozenset()) -> RunnerOutput:
        last_hidden: dict[int, torch.Tensor] = {}
        all_hidden: dict[int, list[torch.Tensor]] = {}
        for launch in self.executor.plan(rows, is_prefill):
            batch, query_len, num_blocks = launch.shape or (None, None, None)
            inputs = build_model_inputs(launch.chunks, self.executor.block_size, batch, query_len, num_blocks)
            hidden = self.executor.forward(inputs, launch, self.kv_cache)        # [B, Q, H]
            real = sum(len(c.token_ids) for c in launch.chunks)
            self.stats.runs[launch.name] += 1
            self.stats.real_tokens[launch.name] += real
            self.stats.padded_tokens[launch.name] += hidden.shape[0] * hidden.shape[1] - real
            flat = hidden.flatten(0, 1)                                          # [B*Q, H]
            for b, (row_id, chunk) in enumerate(zip(launch.row_ids, launch.chunks)):
                last_hidden[row_id] = flat[inputs.last_indices[b]]              # the latest chunk wins
                if row_id in prompt_logits_rows:
                    all_hidden.setdefault(row_id, []).append(hidden[b, : len(chunk.token_ids)])
        ordered = torch.stack([last_hidden[i] for i in range(len(rows))])        # [num_rows, H]
        out = RunnerOutput(self.executor.compute_logits(ordered))
        for row_id, parts in all_hidden.items():
            out.prompt_logits[row_id] = self.executor.compute_logits(torch.cat(parts))
        return out


class EagerExecutor:
    """Runs the nn.Module at the exact size of each step: the reference every compiled graph is checked against."""

    def __init__(self, model: torch.nn.Module, block_size: int):
        self.model, self.block_size = model, block_size

    def plan(self, rows: list[StepRow], is_prefill: bool) -> list[Launch]:
        return [Launch(list(range(len(rows))), list(rows), None, "prefill" if is_prefill else "decode")]

    def forward(self, inputs: ModelInputs, launch: Launch, kv_cache: torch.Tensor) -> torch.Tensor:
        return self.model(*inputs.as_args(kv_cache))

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.compute_logits(hidden)
